package audit

import (
	"bytes"
	"context"
	"database/sql"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/phigate/phigate/store"
)

// raw opens the database file directly, as someone with access to the file
// (not to the keys) would, and drops the append-only triggers first: they
// stop the product, not an attacker holding the file.
func raw(t *testing.T, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	mustExec(t, db, `DROP TRIGGER audit_log_no_update`)
	mustExec(t, db, `DROP TRIGGER audit_log_no_delete`)
	return db
}

func mustExec(t *testing.T, db *sql.DB, q string, args ...any) {
	t.Helper()
	if _, err := db.Exec(q, args...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

// tamperEnv is a verified trail of n entries.
func tamperEnv(t *testing.T, n int, mod func(*Options)) *env {
	t.Helper()
	e := newEnv(t, mod)
	fill(t, e.tr, n)
	if got, err := e.tr.Verify(context.Background()); err != nil || got != int64(n) {
		t.Fatalf("untouched trail: Verify = %d, %v", got, err)
	}
	return e
}

func TestTamperEditField(t *testing.T) {
	e := tamperEnv(t, 100, nil)
	mustExec(t, raw(t, e.db), `UPDATE audit_log SET action = 'message.list' WHERE seq = 50`)
	n, err := e.tr.Verify(context.Background())
	wantBroken(t, err, 50, "mac mismatch")
	if n != 49 {
		t.Errorf("checked %d before the break, want 49", n)
	}
}

func TestTamperEditEveryColumn(t *testing.T) {
	for _, q := range []string{
		`UPDATE audit_log SET at = at + 1 WHERE seq = 50`,
		`UPDATE audit_log SET actor = 'user-9' WHERE seq = 50`,
		`UPDATE audit_log SET ip = '10.0.0.1' WHERE seq = 50`,
		`UPDATE audit_log SET object_type = 'user' WHERE seq = 50`,
		`UPDATE audit_log SET object_id = 'm999' WHERE seq = 50`,
		`UPDATE audit_log SET outcome = 'denied' WHERE seq = 50`,
		`UPDATE audit_log SET cid = 'x' WHERE seq = 50`,
		`UPDATE audit_log SET mac = (SELECT mac FROM audit_log WHERE seq = 49) WHERE seq = 50`,
	} {
		t.Run(strings.Fields(q)[3], func(t *testing.T) {
			e := tamperEnv(t, 60, nil)
			mustExec(t, raw(t, e.db), q)
			_, err := e.tr.Verify(context.Background())
			wantBroken(t, err, 50, "mac mismatch")
		})
	}
}

func TestTamperDetails(t *testing.T) {
	t.Run("flip a byte", func(t *testing.T) {
		e := tamperEnv(t, 100, nil)
		db := raw(t, e.db)
		var enc []byte
		if err := db.QueryRow(`SELECT details_enc FROM audit_log WHERE seq = 50`).Scan(&enc); err != nil {
			t.Fatal(err)
		}
		enc[len(enc)-1] ^= 1
		mustExec(t, db, `UPDATE audit_log SET details_enc = $1 WHERE seq = 50`, enc)
		_, err := e.tr.Verify(context.Background())
		wantBroken(t, err, 50, "mac mismatch")
		// Reading it also refuses rather than showing altered details.
		_, err = e.tr.Search(context.Background(), Query{ObjectID: "m049"})
		wantBroken(t, err, 50, "cannot be decrypted")
	})
	t.Run("copy from another entry", func(t *testing.T) {
		e := tamperEnv(t, 100, nil)
		mustExec(t, raw(t, e.db), `UPDATE audit_log SET details_enc = (SELECT details_enc FROM audit_log WHERE seq = 10) WHERE seq = 50`)
		_, err := e.tr.Verify(context.Background())
		wantBroken(t, err, 50, "mac mismatch")
	})
	t.Run("remove", func(t *testing.T) {
		e := tamperEnv(t, 100, nil)
		mustExec(t, raw(t, e.db), `UPDATE audit_log SET details_enc = x'' WHERE seq = 50`)
		_, err := e.tr.Verify(context.Background())
		wantBroken(t, err, 50, "mac mismatch")
	})
}

func TestTamperDelete(t *testing.T) {
	e := tamperEnv(t, 100, nil)
	mustExec(t, raw(t, e.db), `DELETE FROM audit_log WHERE seq = 50`)
	_, err := e.tr.Verify(context.Background())
	wantBroken(t, err, 50, "sequence gap")

	t.Run("first entry", func(t *testing.T) {
		e := tamperEnv(t, 10, nil)
		mustExec(t, raw(t, e.db), `DELETE FROM audit_log WHERE seq = 1`)
		_, err := e.tr.Verify(context.Background())
		wantBroken(t, err, 1, "sequence gap")
	})
	t.Run("delete and renumber", func(t *testing.T) {
		// Closing the gap by moving the later entries down a number.
		e := tamperEnv(t, 100, nil)
		db := raw(t, e.db)
		mustExec(t, db, `DELETE FROM audit_log WHERE seq = 50`)
		for s := 51; s <= 100; s++ {
			mustExec(t, db, `UPDATE audit_log SET seq = $1 WHERE seq = $2`, s-1, s)
		}
		_, err := e.tr.Verify(context.Background())
		wantBroken(t, err, 50, "mac mismatch")
	})
}

func TestTamperReorder(t *testing.T) {
	e := tamperEnv(t, 100, nil)
	db := raw(t, e.db)
	mustExec(t, db, `UPDATE audit_log SET seq = -1 WHERE seq = 30`)
	mustExec(t, db, `UPDATE audit_log SET seq = 30 WHERE seq = 40`)
	mustExec(t, db, `UPDATE audit_log SET seq = 40 WHERE seq = -1`)
	_, err := e.tr.Verify(context.Background())
	wantBroken(t, err, 30, "mac mismatch")

	t.Run("adjacent", func(t *testing.T) {
		e := tamperEnv(t, 100, nil)
		db := raw(t, e.db)
		mustExec(t, db, `UPDATE audit_log SET seq = -1 WHERE seq = 70`)
		mustExec(t, db, `UPDATE audit_log SET seq = 70 WHERE seq = 71`)
		mustExec(t, db, `UPDATE audit_log SET seq = 71 WHERE seq = -1`)
		_, err := e.tr.Verify(context.Background())
		wantBroken(t, err, 70, "mac mismatch")
	})
}

func TestTamperTruncateTail(t *testing.T) {
	// Checkpoints every 25: the last one is at 100, past the entries cut.
	e := tamperEnv(t, 100, func(o *Options) { o.CheckpointEvery = 25 })
	// The checkpoint for the last batch is written just after its commit.
	var cp *Checkpoint
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if cp, _ = e.tr.LastCheckpoint(); cp != nil && cp.Seq == 100 {
			break
		}
	}
	if cp == nil || cp.Seq != 100 {
		t.Fatalf("last checkpoint %+v, want 100", cp)
	}
	mustExec(t, raw(t, e.db), `DELETE FROM audit_log WHERE seq > 90`)
	n, err := e.tr.Verify(context.Background())
	wantBroken(t, err, 91, "missing before checkpoint")
	if n != 90 {
		t.Errorf("checked %d, want 90 (the rest of the chain is intact)", n)
	}

	t.Run("then appended again", func(t *testing.T) {
		// Writing new entries after the cut makes the chain whole again,
		// but entry 100 is no longer the checkpointed one.
		fill(t, e.tr, 15)
		_, err := e.tr.Verify(context.Background())
		wantBroken(t, err, 100, "differs from checkpoint")
	})
	t.Run("everything", func(t *testing.T) {
		e := tamperEnv(t, 30, func(o *Options) { o.CheckpointEvery = 25 })
		mustExec(t, raw(t, e.db), `DELETE FROM audit_log`)
		_, err := e.tr.Verify(context.Background())
		wantBroken(t, err, 1, "missing before checkpoint")
	})
}

// Someone without the key deletes the tail and writes plausible rows in its
// place, chained with a MAC key of their own on top of the real entry 79.
func TestTamperForgedTail(t *testing.T) {
	e := tamperEnv(t, 100, nil)
	db := raw(t, e.db)
	recs, err := e.st.ListAudit(context.Background(), store.AuditFilter{AfterSeq: 79, Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	var prev []byte
	if err := db.QueryRow(`SELECT mac FROM audit_log WHERE seq = 79`).Scan(&prev); err != nil {
		t.Fatal(err)
	}
	mustExec(t, db, `DELETE FROM audit_log WHERE seq >= 80`)
	guess := bytes.Repeat([]byte{0x33}, 32)
	for _, r := range recs {
		r.Outcome = "denied"
		r.MAC = entryMAC(guess, r, prev)
		prev = r.MAC
		mustExec(t, db, `INSERT INTO audit_log (seq, at, actor, ip, action, object_type, object_id, outcome, cid, details_enc, mac)
			VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11)`, r.Seq, r.At.UnixNano(), r.Actor, r.IP, r.Action, r.ObjectType,
			r.ObjectID, r.Outcome, r.CID, r.DetailsEnc, r.MAC)
	}
	_, err = e.tr.Verify(context.Background())
	wantBroken(t, err, 80, "mac mismatch")

	t.Run("whole table", func(t *testing.T) {
		e := tamperEnv(t, 20, nil)
		db := raw(t, e.db)
		recs, _ := e.st.ListAudit(context.Background(), store.AuditFilter{Limit: 100})
		mustExec(t, db, `DELETE FROM audit_log`)
		var prev []byte
		for _, r := range recs {
			r.MAC = entryMAC(guess, r, prev)
			prev = r.MAC
			mustExec(t, db, `INSERT INTO audit_log (seq, at, actor, ip, action, object_type, object_id, outcome, cid, details_enc, mac)
				VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11)`, r.Seq, r.At.UnixNano(), r.Actor, r.IP, r.Action, r.ObjectType,
				r.ObjectID, r.Outcome, r.CID, r.DetailsEnc, r.MAC)
		}
		_, err := e.tr.Verify(context.Background())
		wantBroken(t, err, 1, "mac mismatch")
	})
}

// An inserted row (a new last entry with a made-up MAC) is caught too.
func TestTamperAppendForged(t *testing.T) {
	e := tamperEnv(t, 10, nil)
	mustExec(t, raw(t, e.db), `INSERT INTO audit_log (seq, at, actor, ip, action, object_type, object_id, outcome, cid, details_enc, mac)
		SELECT 11, at, actor, ip, action, object_type, object_id, outcome, cid, details_enc, mac FROM audit_log WHERE seq = 10`)
	_, err := e.tr.Verify(context.Background())
	wantBroken(t, err, 11, "mac mismatch")
}

// Editing the checkpoint file to hide a truncation (lowering the seq of
// the last checkpoint) is caught by the line's own tag.
func TestTamperCheckpointFile(t *testing.T) {
	e := tamperEnv(t, 100, func(o *Options) { o.CheckpointEvery = 25 })
	mustExec(t, raw(t, e.db), `DELETE FROM audit_log WHERE seq > 90`)
	b, err := os.ReadFile(e.cpFile)
	if err != nil {
		t.Fatal(err)
	}
	edited := strings.Replace(string(b), `"seq":100,`, `"seq":90,`, 1)
	if edited == string(b) {
		t.Fatalf("no checkpoint at 100 in\n%s", b)
	}
	if err := os.WriteFile(e.cpFile, []byte(edited), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = e.tr.Verify(context.Background())
	wantBroken(t, err, 90, "forged or edited")
}
