package audit

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/phigate/phigate/internal/syncbuf"
	"github.com/phigate/phigate/logx"
	"github.com/phigate/phigate/store"
)

var (
	testMACKey = bytes.Repeat([]byte{0x11}, 32)
	testEncKey = bytes.Repeat([]byte{0x22}, 32)
)

type env struct {
	dir, db, cpFile string
	st              *store.SQL
	tr              *Trail
}

func openStore(t testing.TB, path string) *store.SQL {
	t.Helper()
	st, err := store.OpenSQLite(context.Background(), path)
	if err != nil {
		t.Fatalf("OpenSQLite: %v", err)
	}
	return st
}

// newEnv opens a fresh database and a trail on it; mod adjusts the options.
func newEnv(t testing.TB, mod func(*Options)) *env {
	t.Helper()
	dir := t.TempDir()
	e := &env{dir: dir, db: filepath.Join(dir, "phigate.db"), cpFile: filepath.Join(dir, "audit-checkpoints.jsonl")}
	e.st = openStore(t, e.db)
	e.tr = newTrail(t, e.st, e.cpFile, mod)
	t.Cleanup(func() {
		e.tr.Close()
		e.st.Close()
	})
	return e
}

func newTrail(t testing.TB, st store.AuditStore, cpFile string, mod func(*Options)) *Trail {
	t.Helper()
	o := Options{Store: st, MACKey: testMACKey, EncKey: testEncKey, CheckpointFile: cpFile}
	if mod != nil {
		mod(&o)
	}
	tr, err := New(o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return tr
}

func record(t testing.TB, tr *Trail, e Entry) {
	t.Helper()
	if err := tr.Record(context.Background(), e); err != nil {
		t.Fatalf("Record(%+v): %v", e, err)
	}
}

// fill records n simple entries, alternating actors and actions.
func fill(t testing.TB, tr *Trail, n int) {
	t.Helper()
	for i := range n {
		record(t, tr, Entry{
			Actor: fmt.Sprintf("user-%d", i%3), IP: "192.0.2.10", Action: "message.read",
			ObjectType: "message", ObjectID: fmt.Sprintf("m%03d", i), Outcome: OK,
			Details: map[string]string{"n": fmt.Sprint(i)},
		})
	}
}

func wantBroken(t *testing.T, err error, seq int64, reason string) {
	t.Helper()
	var be *BrokenError
	if !errors.As(err, &be) {
		t.Fatalf("Verify: got %v, want a BrokenError at %d (%s)", err, seq, reason)
	}
	if be.Seq != seq || !strings.Contains(be.Reason, reason) {
		t.Fatalf("Verify: got %q at %d, want %q at %d", be.Reason, be.Seq, reason, seq)
	}
}

func TestRecordSearchHistory(t *testing.T) {
	clock := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	now := func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		clock = clock.Add(time.Minute)
		return clock
	}
	e := newEnv(t, func(o *Options) { o.Now = now })
	ctx := logx.WithCorrelation(context.Background(), "cid-smtp-1")

	steps := []Entry{
		{Actor: "smtp:198.51.100.7", IP: "198.51.100.7", Action: "smtp.accept", ObjectType: "message", ObjectID: "msg-1", Outcome: OK,
			Details: map[string]string{"to": "pat.jones@example.org", "sender": "dr.lee@clinic.example"}},
		{Actor: "system", Action: "notice.sent", ObjectType: "message", ObjectID: "msg-1", Outcome: OK},
		{Actor: "u-patient", IP: "203.0.113.5", Action: "auth.login", ObjectType: "user", ObjectID: "u-patient", Outcome: OK},
		{Actor: "u-patient", IP: "203.0.113.5", Action: "message.read", ObjectType: "message", ObjectID: "msg-1", Outcome: OK},
		{Actor: "u-other", IP: "203.0.113.9", Action: "message.read", ObjectType: "message", ObjectID: "msg-1", Outcome: Denied,
			Details: map[string]string{"reason": "not the recipient"}},
		{Actor: "u-patient", IP: "203.0.113.5", Action: "auth.logout", ObjectType: "session", ObjectID: "s-1", Outcome: OK},
	}
	for _, s := range steps {
		if err := e.tr.Record(ctx, s); err != nil {
			t.Fatal(err)
		}
	}

	hist, err := e.tr.History(ctx, "message", "msg-1")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, h := range hist {
		got = append(got, fmt.Sprintf("%d %s %s %s", h.Seq, h.Actor, h.Action, h.Outcome))
	}
	want := []string{"1 smtp:198.51.100.7 smtp.accept ok", "2 system notice.sent ok", "4 u-patient message.read ok", "5 u-other message.read denied"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("History:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if hist[0].Details["to"] != "pat.jones@example.org" || hist[0].Details["sender"] != "dr.lee@clinic.example" {
		t.Errorf("details not decrypted: %v", hist[0].Details)
	}
	if hist[3].Details["reason"] != "not the recipient" || hist[1].Details != nil {
		t.Errorf("details: %v / %v", hist[3].Details, hist[1].Details)
	}
	if hist[0].Correlation != "cid-smtp-1" {
		t.Errorf("correlation %q, want it from ctx", hist[0].Correlation)
	}
	if want := time.Date(2026, 3, 1, 9, 1, 0, 0, time.UTC); !hist[0].Time.Equal(want) {
		t.Errorf("time %v, want %v", hist[0].Time, want)
	}

	search := func(q Query) []int64 {
		t.Helper()
		es, err := e.tr.Search(ctx, q)
		if err != nil {
			t.Fatalf("Search(%+v): %v", q, err)
		}
		var seqs []int64
		for _, x := range es {
			seqs = append(seqs, x.Seq)
		}
		return seqs
	}
	for _, c := range []struct {
		q    Query
		want []int64
	}{
		{Query{Actor: "u-patient"}, []int64{3, 4, 6}},
		{Query{Action: "message.read"}, []int64{4, 5}},
		{Query{Action: "auth.*"}, []int64{3, 6}},
		{Query{IP: "203.0.113.9"}, []int64{5}},
		{Query{ObjectType: "message", ObjectID: "msg-1"}, []int64{1, 2, 4, 5}},
		{Query{ObjectType: "message", Outcome: Denied}, []int64{5}},
		{Query{From: time.Date(2026, 3, 1, 9, 3, 0, 0, time.UTC), To: time.Date(2026, 3, 1, 9, 5, 0, 0, time.UTC)}, []int64{3, 4}},
		{Query{Actor: "u-patient", Newest: true}, []int64{6, 4, 3}},
		{Query{Newest: true, Limit: 2}, []int64{6, 5}},
		{Query{Newest: true, Limit: 2, BeforeSeq: 5}, []int64{4, 3}},
		{Query{AfterSeq: 4}, []int64{5, 6}},
		{Query{Correlation: "cid-smtp-1", Limit: 1}, []int64{1}},
		{Query{Actor: "nobody"}, nil},
	} {
		if got := search(c.q); fmt.Sprint(got) != fmt.Sprint(c.want) {
			t.Errorf("Search(%+v) = %v, want %v", c.q, got, c.want)
		}
	}

	seq, mac, err := e.tr.Head(ctx)
	if err != nil || seq != 6 || len(mac) != 32 {
		t.Fatalf("Head = %d, %x, %v", seq, mac, err)
	}
	if n, err := e.tr.Verify(ctx); err != nil || n != 6 {
		t.Fatalf("Verify = %d, %v", n, err)
	}
}

func TestRecordRefusesBadEntries(t *testing.T) {
	e := newEnv(t, nil)
	for _, x := range []Entry{
		{Action: "message.read", Outcome: OK},
		{Actor: "u1", Outcome: OK},
		{Actor: "u1", Action: "message.read"},
		{Actor: "u1", Action: "auth.login", ObjectType: "user", ObjectID: "pat.jones@example.org", Outcome: Failed},
		{Actor: "pat.jones@example.org", Action: "auth.login", Outcome: Failed},
	} {
		if err := e.tr.Record(context.Background(), x); err == nil {
			t.Errorf("Record(%+v) accepted", x)
		}
	}
	if seq, _, _ := e.tr.Head(context.Background()); seq != 0 {
		t.Fatalf("head %d after refused entries", seq)
	}
}

func TestNewChecksKeys(t *testing.T) {
	st := openStore(t, filepath.Join(t.TempDir(), "k.db"))
	defer st.Close()
	for _, o := range []Options{
		{Store: st, MACKey: testMACKey[:16], EncKey: testEncKey},
		{Store: st, MACKey: testMACKey, EncKey: testMACKey},
		{MACKey: testMACKey, EncKey: testEncKey},
	} {
		if tr, err := New(o); err == nil {
			tr.Close()
			t.Errorf("New accepted %+v", o)
		}
	}
}

// The details column holds ciphertext only: a planted address and name are
// nowhere in the database files.
func TestDetailsEncryptedAtRest(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "phigate.db")
	st := openStore(t, path)
	tr := newTrail(t, st, "", nil)
	const addr, name = "canary.patient.4417@example.org", "Zebulon Quaxwhistle"
	for i := range 20 {
		record(t, tr, Entry{Actor: "system", Action: "smtp.accept", ObjectType: "message", ObjectID: fmt.Sprint("m", i),
			Outcome: OK, Details: map[string]string{"rcpt": addr, "display_name": name}})
	}
	got, err := tr.Search(context.Background(), Query{Limit: 1})
	if err != nil || got[0].Details["rcpt"] != addr {
		t.Fatalf("Search: %v %v", got, err)
	}
	tr.Close()
	st.Close()
	files, _ := filepath.Glob(path + "*")
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range []string{addr, "canary.patient", name, "Quaxwhistle"} {
			if bytes.Contains(b, []byte(c)) {
				t.Errorf("%s contains %q in the clear", filepath.Base(f), c)
			}
		}
	}
}

// Inside the product the table cannot be changed: the triggers refuse.
func TestAppendOnly(t *testing.T) {
	e := newEnv(t, nil)
	fill(t, e.tr, 3)
	ctx := context.Background()
	for _, q := range []string{
		`UPDATE audit_log SET outcome = 'denied' WHERE seq = 2`,
		`DELETE FROM audit_log WHERE seq = 3`,
		`DELETE FROM audit_log`,
	} {
		if _, err := e.st.DB().ExecContext(ctx, q); err == nil || !strings.Contains(err.Error(), "append-only") {
			t.Errorf("%s: err = %v, want append-only", q, err)
		}
	}
	if n, err := e.tr.Verify(ctx); err != nil || n != 3 {
		t.Fatalf("Verify = %d, %v", n, err)
	}
}

func TestConcurrentRecords(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 8*200)
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				errs <- e.tr.Record(ctx, Entry{Actor: fmt.Sprint("u", g), Action: "message.read", ObjectType: "message",
					ObjectID: fmt.Sprintf("m-%d-%d", g, i), Outcome: OK, Details: map[string]string{"i": fmt.Sprint(i)}})
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	n, err := e.tr.Verify(ctx)
	if err != nil || n != 1600 {
		t.Fatalf("Verify = %d, %v", n, err)
	}
	for g := range 8 {
		es, err := e.tr.Search(ctx, Query{Actor: fmt.Sprint("u", g), Limit: 1000})
		if err != nil || len(es) != 200 {
			t.Fatalf("actor u%d: %d entries, %v", g, len(es), err)
		}
		// Each goroutine's entries keep its own order in the chain.
		for i, x := range es {
			if x.Details["i"] != fmt.Sprint(i) {
				t.Fatalf("u%d entry %d has details %v", g, i, x.Details)
			}
		}
	}
}

// Two nodes (two store handles, two trails, as two processes would have)
// write to one database at once: they extend one chain.
func TestTwoNodesOneChain(t *testing.T) {
	e := newEnv(t, nil)
	st2 := openStore(t, e.db)
	defer st2.Close()
	tr2 := newTrail(t, st2, filepath.Join(e.dir, "node2-checkpoints.jsonl"), func(o *Options) { o.CheckpointEvery = 100 })
	defer tr2.Close()
	ctx := context.Background()
	var wg sync.WaitGroup
	var failed sync.Map
	for g := range 8 {
		tr := e.tr
		if g%2 == 1 {
			tr = tr2
		}
		wg.Go(func() {
			for i := range 100 {
				if err := tr.Record(ctx, Entry{Actor: fmt.Sprintf("node%d-g%d", g%2+1, g), Action: "message.read",
					ObjectType: "message", ObjectID: fmt.Sprint(i), Outcome: OK, Details: map[string]string{"g": fmt.Sprint(g)}}); err != nil {
					failed.Store(g, err)
					return
				}
			}
		})
	}
	wg.Wait()
	failed.Range(func(k, v any) bool { t.Fatalf("goroutine %v: %v", k, v); return false })
	for _, tr := range []*Trail{e.tr, tr2} {
		if n, err := tr.Verify(ctx); err != nil || n != 800 {
			t.Fatalf("Verify = %d, %v", n, err)
		}
	}
	// How often the writer switches above depends on scheduling (one node
	// may win every lock race on a quiet machine). Interleave for certain:
	// the nodes take turns, so each entry must chain onto the head the
	// other node just wrote, never onto a head a node remembers.
	for i := range 20 {
		tr := []*Trail{e.tr, tr2}[i%2]
		if err := tr.Record(ctx, Entry{Actor: fmt.Sprintf("turn-node%d", i%2+1), Action: "message.read",
			ObjectType: "message", ObjectID: fmt.Sprint(i), Outcome: OK}); err != nil {
			t.Fatal(err)
		}
	}
	last, err := e.tr.Search(ctx, Query{Newest: true, Limit: 20})
	if err != nil || len(last) != 20 {
		t.Fatalf("last 20 entries: %d, %v", len(last), err)
	}
	for i, x := range last { // newest first: turn 19 (node 2) down to turn 0
		if want := fmt.Sprintf("turn-node%d", (19-i)%2+1); x.Actor != want {
			t.Fatalf("entry %d from the newest is %s, want %s: the nodes did not alternate", i, x.Actor, want)
		}
	}
	for _, tr := range []*Trail{e.tr, tr2} {
		if n, err := tr.Verify(ctx); err != nil || n != 820 {
			t.Fatalf("Verify after alternating writes = %d, %v", n, err)
		}
	}
	es, err := e.tr.Search(ctx, Query{Actor: "node2-g3"})
	if err != nil || len(es) != 100 || es[0].Details["g"] != "3" {
		t.Fatalf("node 2's entries read from node 1: %d, %v", len(es), err)
	}
}

func TestCheckpoints(t *testing.T) {
	logs := &syncbuf.Buffer{}
	e := newEnv(t, func(o *Options) {
		o.CheckpointEvery = 10
		o.Log = slog.New(slog.NewTextHandler(logs, nil))
	})
	fill(t, e.tr, 25)
	cps, err := e.tr.readCheckpoints()
	if err != nil {
		t.Fatal(err)
	}
	if len(cps) != 2 || cps[0].Seq != 10 || cps[1].Seq != 20 {
		t.Fatalf("checkpoints %+v, want at 10 and 20", cps)
	}
	if err := e.tr.Close(); err != nil {
		t.Fatal(err)
	}
	cp, err := e.tr.LastCheckpoint()
	if err != nil || cp == nil || cp.Seq != 25 {
		t.Fatalf("after Close: last checkpoint %+v, %v; want 25", cp, err)
	}
	_, mac, _ := e.st.AuditHead(context.Background())
	if cp.MAC != fmt.Sprintf("%x", mac) {
		t.Errorf("checkpoint mac %s, head mac %x", cp.MAC, mac)
	}
	for _, s := range []string{"seq=10", "seq=20", "seq=25"} {
		if !strings.Contains(logs.String(), `msg="audit checkpoint" `+s) {
			t.Errorf("log lacks the checkpoint %s:\n%s", s, logs.String())
		}
	}
	if err := e.tr.Record(context.Background(), Entry{Actor: "system", Action: "x", Outcome: OK}); !errors.Is(err, ErrClosed) {
		t.Errorf("Record after Close: %v", err)
	}
	// A reopened trail goes on from the head and keeps verifying.
	tr := newTrail(t, e.st, e.cpFile, func(o *Options) { o.CheckpointEvery = 10 })
	defer tr.Close()
	fill(t, tr, 6)
	if n, err := tr.Verify(context.Background()); err != nil || n != 31 {
		t.Fatalf("Verify = %d, %v", n, err)
	}
	if cp, _ := tr.LastCheckpoint(); cp.Seq != 30 {
		t.Fatalf("last checkpoint %d, want 30", cp.Seq)
	}
}

func TestCheckpointInterval(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.CheckpointInterval = 20 * time.Millisecond })
	fill(t, e.tr, 3)
	deadline := time.Now().Add(5 * time.Second)
	for {
		cp, err := e.tr.LastCheckpoint()
		if err != nil {
			t.Fatal(err)
		}
		if cp != nil && cp.Seq == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no timed checkpoint: %+v", cp)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A crash can tear the last checkpoint line; the next one still starts on
// its own line and the torn one is ignored.
func TestTornCheckpointLine(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.CheckpointEvery = 5 })
	fill(t, e.tr, 5)
	e.tr.Close()
	f, _ := os.OpenFile(e.cpFile, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(`{"seq":7,"ti`)
	f.Close()
	tr := newTrail(t, e.st, e.cpFile, func(o *Options) { o.CheckpointEvery = 5 })
	defer tr.Close()
	fill(t, tr, 5)
	if n, err := tr.Verify(context.Background()); err != nil || n != 10 {
		t.Fatalf("Verify = %d, %v", n, err)
	}
	if cp, _ := tr.LastCheckpoint(); cp == nil || cp.Seq != 10 {
		t.Fatalf("last checkpoint %+v", cp)
	}
}

func TestExport(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.CheckpointEvery = 4 })
	fill(t, e.tr, 5)
	record(t, e.tr, Entry{Actor: "=cmd|' /C calc'!A0", Action: "auth.login", ObjectType: "user", ObjectID: "u9", Outcome: Failed,
		Details: map[string]string{"addr": "pat.jones@example.org", "note": "line1\nline2, \"quoted\""}})
	ctx := context.Background()

	var jb bytes.Buffer
	if err := e.tr.Export(ctx, &jb, "json", Query{}); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Head       ExportHead  `json:"head"`
		Checkpoint *Checkpoint `json:"checkpoint"`
		Entries    []Entry     `json:"entries"`
	}
	if err := json.Unmarshal(jb.Bytes(), &doc); err != nil {
		t.Fatalf("export JSON: %v\n%s", err, jb.String())
	}
	_, mac, _ := e.tr.Head(ctx)
	if doc.Head.Seq != 6 || doc.Head.MAC != fmt.Sprintf("%x", mac) {
		t.Errorf("head %+v", doc.Head)
	}
	if doc.Checkpoint == nil || doc.Checkpoint.Seq != 4 {
		t.Errorf("checkpoint %+v, want seq 4", doc.Checkpoint)
	}
	if len(doc.Entries) != 6 || doc.Entries[5].Details["addr"] != "pat.jones@example.org" || doc.Entries[0].Seq != 1 {
		t.Errorf("entries %+v", doc.Entries)
	}

	var cb bytes.Buffer
	if err := e.tr.Export(ctx, &cb, "csv", Query{Action: "auth.login"}); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(cb.String()), "\n")
	tail := lines[len(lines)-2:]
	if tail[0] != fmt.Sprintf("# head seq=6 mac=%x", mac) || !strings.HasPrefix(tail[1], "# checkpoint seq=4 time=") {
		t.Errorf("CSV trailer %q", tail)
	}
	rows, err := csv.NewReader(strings.NewReader(strings.Join(lines[:len(lines)-2], "\n"))).ReadAll()
	if err != nil {
		t.Fatalf("CSV: %v\n%s", err, cb.String())
	}
	if len(rows) != 2 || strings.Join(rows[0], ",") != strings.Join(csvHeader, ",") {
		t.Fatalf("CSV rows %q", rows)
	}
	r := rows[1]
	if r[0] != "6" || r[2] != "'=cmd|' /C calc'!A0" || r[4] != "auth.login" || r[7] != "failed" {
		t.Errorf("CSV row %q", r)
	}
	var d map[string]string
	if err := json.Unmarshal([]byte(r[9]), &d); err != nil || d["note"] != "line1\nline2, \"quoted\"" {
		t.Errorf("CSV details %q: %v", r[9], err)
	}

	// Without a checkpoint file the export says so.
	tr := newTrail(t, e.st, "", nil)
	defer tr.Close()
	cb.Reset()
	if err := tr.Export(ctx, &cb, "csv", Query{Limit: 2}); err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(cb.String(), "# checkpoint none\n") || strings.Count(cb.String(), "\n") != 5 {
		t.Errorf("CSV without checkpoint:\n%s", cb.String())
	}
	jb.Reset()
	if err := tr.Export(ctx, &jb, "json", Query{}); err != nil || !strings.Contains(jb.String(), `"checkpoint":null`) {
		t.Errorf("JSON without checkpoint: %v\n%s", err, jb.String())
	}
	if err := tr.Export(ctx, &cb, "xml", Query{}); err == nil {
		t.Error("xml export accepted")
	}
}

// Exports and verification page through the table; check a trail longer
// than one page.
func TestLongTrail(t *testing.T) {
	if testing.Short() {
		t.Skip("long")
	}
	e := newEnv(t, nil)
	ctx := context.Background()
	var wg sync.WaitGroup
	for g := range 50 {
		wg.Go(func() {
			for i := range 100 {
				if err := e.tr.Record(ctx, Entry{Actor: "system", Action: "bulk", ObjectType: "message", ObjectID: fmt.Sprint(g), Outcome: OK, Details: map[string]string{"i": fmt.Sprint(i)}}); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if n, err := e.tr.Verify(ctx); err != nil || n != 5000 {
		t.Fatalf("Verify = %d, %v", n, err)
	}
	var b bytes.Buffer
	if err := e.tr.Export(ctx, &b, "json", Query{Newest: true}); err != nil {
		t.Fatal(err)
	}
	var doc struct{ Entries []Entry }
	if err := json.Unmarshal(b.Bytes(), &doc); err != nil || len(doc.Entries) != 5000 || doc.Entries[0].Seq != 5000 || doc.Entries[4999].Seq != 1 {
		t.Fatalf("export: %d entries, %v", len(doc.Entries), err)
	}
	h, err := e.tr.History(ctx, "message", "7")
	if err != nil || len(h) != 100 {
		t.Fatalf("History: %d, %v", len(h), err)
	}
}

// conflicting wraps the real store and reports the first appends as lost
// to another node, as a primary-key conflict on PostgreSQL would; the
// trail must rebuild the batch on the new head and retry.
type conflicting struct {
	store.AuditStore
	left  atomic.Int32
	other *Trail
}

func (c *conflicting) AppendAudit(ctx context.Context, build store.AuditFunc) error {
	if c.left.Add(-1) >= 0 {
		// Another node wins the race for the next number.
		if err := c.other.Record(ctx, Entry{Actor: "node2", Action: "race.win", Outcome: OK}); err != nil {
			return err
		}
		return store.ErrConflict
	}
	return c.AuditStore.AppendAudit(ctx, build)
}

func TestConflictRetry(t *testing.T) {
	e := newEnv(t, nil)
	st2 := openStore(t, e.db)
	defer st2.Close()
	other := newTrail(t, st2, "", nil)
	defer other.Close()
	c := &conflicting{AuditStore: e.st, other: other}
	c.left.Store(3)
	tr := newTrail(t, c, "", nil)
	defer tr.Close()
	record(t, tr, Entry{Actor: "node1", Action: "after.retries", Outcome: OK, Details: map[string]string{"k": "v"}})
	es, err := tr.Search(context.Background(), Query{})
	if err != nil {
		t.Fatal(err)
	}
	if len(es) != 4 || es[3].Action != "after.retries" || es[3].Seq != 4 || es[3].Details["k"] != "v" {
		t.Fatalf("entries %+v", es)
	}
	if n, err := tr.Verify(context.Background()); err != nil || n != 4 {
		t.Fatalf("Verify = %d, %v", n, err)
	}
}
