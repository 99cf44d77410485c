package smtpd

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/phigate/phigate/audit"
	"github.com/phigate/phigate/internal/syncbuf"
	"github.com/phigate/phigate/internal/testclock"
	"github.com/phigate/phigate/logx"
	_ "modernc.org/sqlite"
)

func TestValidHelo(t *testing.T) {
	for name, want := range map[string]bool{
		"mail.clinic.example": true, "localhost": true, "a-b.c": true, "1host.example": true,
		"[192.0.2.1]": true, "[IPv6:2001:db8::1]": true, "[ipv6:::1]": true, "host_1.lan": true,
		"": false, "-a.example": false, "a-.example": false, "a..b": false, ".a": false, "a.": false,
		strings.Repeat("a", 64) + ".example": false, strings.Repeat("a.", 128) + "a": false,
		"[192.0.2.1": false, "[::1]": false, "[IPv6:192.0.2.1]": false, "[IPv6:fe80::1%eth0]": false,
		"[tag:x]": false, "héllo.example": false, "a b": false, "a;b": false,
	} {
		if got := validHelo(name); got != want {
			t.Errorf("validHelo(%q) = %v, want %v", name, got, want)
		}
	}
}

func TestPlainAddr(t *testing.T) {
	for addr, want := range map[string]bool{
		"patient@example.net": true, "first.last+tag@clinic.example": true, "x": true,
		"a%b@clinic.example": false, "a!b@clinic.example": false, `"a"@clinic.example`: false,
		`"a@b"@clinic.example`: false, `a\@b@clinic.example`: false, "a@[192.0.2.1]": false, "a@[IPv6:::1]": false,
	} {
		if got := plainAddr(addr); got != want {
			t.Errorf("plainAddr(%q) = %v, want %v", addr, got, want)
		}
	}
}

func TestHasBareNewline(t *testing.T) {
	for msg, want := range map[string]bool{
		"": false, "a\r\nb\r\n": false, "a\r\n\r\nb": false, "no newline": false,
		"a\nb\r\n": true, "a\r\nb\n": true, "a\rb\r\n": true, "a\r\nb\r": true, "\n": true, "\r": true, "a\r\r\n": true,
	} {
		if got := hasBareNewline([]byte(msg)); got != want {
			t.Errorf("hasBareNewline(%q) = %v, want %v", msg, got, want)
		}
	}
}

// TestDiskFull: a full disk, from the file system or from a real SQLite
// database that has run out of pages, is answered 452 4.3.1 "insufficient
// system storage"; other faults stay 451 4.3.0.
func TestDiskFull(t *testing.T) {
	db, err := sql.Open("sqlite", "file:"+filepath.Join(t.TempDir(), "full.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	for _, q := range []string{"CREATE TABLE t (b BLOB)", "PRAGMA max_page_count = 8"} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	var full error
	for i := 0; i < 100 && full == nil; i++ {
		_, full = db.Exec("INSERT INTO t VALUES (?)", make([]byte, 4096))
	}
	if full == nil {
		t.Fatal("the database never filled up")
	}
	for name, cause := range map[string]error{
		"SQLITE_FULL":          fmt.Errorf("intake: store: %w", full),
		"ENOSPC":               &os.PathError{Op: "write", Path: "maildrop/x", Err: syscall.ENOSPC},
		"ENOSPC wrapped twice": fmt.Errorf("a: %w", fmt.Errorf("b: %w", syscall.ENOSPC)),
	} {
		e := fault(cause)
		r := e.reply("ref1")
		if r.Code != 452 || r.EnhancedCode != [3]int{4, 3, 1} || !strings.Contains(r.Message, "Insufficient system storage") {
			t.Errorf("%s: %d %v %q", name, r.Code, r.EnhancedCode, r.Message)
		}
	}
	if r := fault(fmt.Errorf("network is down")).reply("ref"); r.Code != 451 {
		t.Errorf("other fault: %d", r.Code)
	}
}

// TestFaultLogBounded: a fault repeated thousands of times is logged once
// per interval per kind, with the count of the lines held back.
func TestFaultLogBounded(t *testing.T) {
	buf := &syncbuf.Buffer{}
	f := newFaultLog(logx.New(buf, "text", "debug"), 10*time.Second)
	clock := testclock.New(time.Unix(1_700_000_000, 0))
	f.now = clock.Now
	for i := 0; i < 5000; i++ {
		f.logAt(context.Background(), slog.LevelError, "fault data 452 disk full", "smtp fault", "stage", "data")
		if i%1000 == 999 {
			clock.Add(3 * time.Second) // 15 s in all
		}
	}
	f.logAt(context.Background(), slog.LevelError, "another kind", "smtp fault", "stage", "mail")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("%d lines for 5000 identical faults over 15 s and one other:\n%s", len(lines), buf.String())
	}
	if !strings.Contains(lines[1], "repeated=") || !strings.Contains(lines[2], "stage=mail") {
		t.Errorf("lines:\n%s", buf.String())
	}
}

type memRecorder struct{ entries []audit.Entry }

func (m *memRecorder) Record(_ context.Context, e audit.Entry) error {
	m.entries = append(m.entries, e)
	return nil
}

// TestUnauthenticatedAuditAggregated: what a client writes to the audit
// trail before AUTH is one entry per kind as it happens and one summary
// with the count when the window ends, however many events there are.
func TestUnauthenticatedAuditAggregated(t *testing.T) {
	rec := &memRecorder{}
	b := &Server{Audit: rec, Log: slog.New(slog.DiscardHandler), Opts: Options{Auth: AuthLimits{MaxPerIP: 20, Window: 15 * time.Minute}}}
	clock := testclock.New(time.Unix(1_700_000_000, 0))
	b.clients().now = clock.Now
	fail := audit.Entry{Actor: "smtp:192.0.2.7", IP: "192.0.2.7", Action: "smtp.auth", ObjectType: "connection", Outcome: "failed"}
	for i := 0; i < 1000; i++ {
		b.record(context.Background(), fail, false)
		b.record(context.Background(), audit.Entry{Actor: "smtp:192.0.2.7", IP: "192.0.2.7", Action: "smtp.connect", Outcome: "ok"}, false)
	}
	if len(rec.entries) != 2 {
		t.Fatalf("%d entries written during the window, want 2 (one per kind)", len(rec.entries))
	}
	// An authenticated user's entries are written as they are.
	b.record(context.Background(), audit.Entry{Actor: "u1", IP: "192.0.2.7", Action: "smtp.auth", Outcome: "ok"}, true)
	if len(rec.entries) != 3 {
		t.Fatalf("authenticated entry not written")
	}
	clock.Add(15 * time.Minute)
	b.record(context.Background(), fail, false) // next window: written, and the last one summarised
	var summaries []audit.Entry
	for _, e := range rec.entries[3:] {
		if e.Details["aggregated"] == "true" {
			summaries = append(summaries, e)
		}
	}
	if len(summaries) != 2 || summaries[0].Details["count"] != "999" || summaries[0].IP != "192.0.2.7" {
		t.Errorf("summaries: %+v", summaries)
	}
	if len(rec.entries) != 6 {
		t.Errorf("%d entries, want 6", len(rec.entries))
	}
	// At shutdown every window is summarised.
	b.record(context.Background(), fail, false)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	b.Run(ctx)
	if last := rec.entries[len(rec.entries)-1]; last.Details["count"] != "1" {
		t.Errorf("flush at shutdown: %+v", last)
	}
}
