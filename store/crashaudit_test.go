package store

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

const crashAuditEnv = "PHIGATE_STORE_TEST_CRASH_AUDIT_DB"

// TestSQLiteKill9AuditHelper is the child of TestSQLiteKill9Audit: eight
// writers deliver messages with their entries as fast as they can and
// report each delivery once Deliver returned, until the parent kills the
// process.
func TestSQLiteKill9AuditHelper(t *testing.T) {
	path := os.Getenv(crashAuditEnv)
	if path == "" {
		t.Skip("helper process for TestSQLiteKill9Audit")
	}
	ctx := context.Background()
	s, err := OpenSQLite(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	sender := newUser(t, "crash-sender", RoleStaff, StatusActive)
	rcpt := newUser(t, "crash-rcpt", RolePatient, StatusActive)
	for _, u := range []*User{sender, rcpt} {
		if err := s.CreateUser(ctx, u); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex // one line at a time on stdout
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				m := newMsg(fmt.Sprintf("crash-%d-%d", w, i), rcpt, sender, t0)
				c := &chained{action: "message.accept", ids: []string{m.ID}}
				if err := s.Deliver(ctx, Delivery{Messages: []Message{m}, Outbox: []OutboxItem{mkOutbox(rcpt.ID, m.ID, t0)}, Audit: c.fn}); err != nil {
					fmt.Println("ERROR", err)
					return
				}
				mu.Lock()
				fmt.Println("COMMITTED", m.ID)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
}

// TestSQLiteKill9Audit (issue 9.2): the process is killed (SIGKILL) in the
// middle of concurrent group-committed deliveries. After reopening, every
// delivery it reported has its message and exactly one entry, and no
// message is stored without its entry nor an entry written for a message
// that is not: the two were in one transaction. The chain has no gap.
func TestSQLiteKill9Audit(t *testing.T) {
	if os.Getenv(crashAuditEnv) != "" {
		t.Skip()
	}
	path := filepath.Join(t.TempDir(), "phigate.db")
	cmd := exec.Command(os.Args[0], "-test.run=^TestSQLiteKill9AuditHelper$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashAuditEnv+"="+path)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var reported []string
	sc := bufio.NewScanner(out)
	for sc.Scan() && len(reported) < 300 {
		line := sc.Text()
		if id, ok := strings.CutPrefix(line, "COMMITTED "); ok {
			reported = append(reported, id)
		} else if strings.HasPrefix(line, "ERROR") {
			t.Fatalf("helper: %s", line)
		}
	}
	// Mid-commit: the writers are still going.
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	if len(reported) < 300 {
		t.Fatalf("helper reported only %d deliveries", len(reported))
	}

	s := openSQLiteAt(t, path)
	defer s.Close()
	ctx := context.Background()
	for _, id := range reported {
		if _, err := s.GetMessage(ctx, id); err != nil {
			t.Fatalf("reported delivery %s lost: %v", id, err)
		}
	}
	msgs, err := s.queryMessages(ctx, false, `SELECT `+msgCols+` FROM messages`)
	if err != nil {
		t.Fatal(err)
	}
	entries, err := s.ListAudit(ctx, AuditFilter{Action: "message.accept", Limit: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	stored := map[string]bool{}
	for _, m := range msgs {
		stored[m.ID] = true
	}
	audited := map[string]int{}
	for _, e := range entries {
		audited[e.ObjectID]++
		if !stored[e.ObjectID] {
			t.Errorf("entry %d for message %s, which is not stored", e.Seq, e.ObjectID)
		}
	}
	for id := range stored {
		if audited[id] != 1 {
			t.Errorf("message %s stored with %d entries, want 1", id, audited[id])
		}
	}
	if n := checkChain(t, s); n != len(msgs) {
		t.Errorf("%d entries in the chain for %d messages", n, len(msgs))
	}
	t.Logf("%d deliveries reported before the kill, %d committed", len(reported), len(msgs))
}
