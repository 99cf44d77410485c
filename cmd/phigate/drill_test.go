package main

// Crash drills (issue 9.6): concurrent SMTP load against the real binary,
// SIGKILL at random points several times and one SIGTERM, then the promises
// checked on what is left: every 250'd message stored once with its
// message.accept audit entry, every notice sent at least once (duplicates
// only from sends in flight at a kill), the audit chain verifies, and the
// SQLite file is intact.

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"regexp"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/phigate/phigate/config"
	"github.com/phigate/phigate/notify"
	"github.com/phigate/phigate/store"
)

const drillWorkers = 4

// drillConfig lifts the per-account hourly cap: one staff account sends
// every message of the drill.
const drillConfig = "[smtp.senders]\nmessages_per_hour = 0\n"

// drillRound is what the clients saw in one round of load.
type drillRound struct {
	mu       sync.Mutex
	tried    []string        // recipients, one per transaction started
	accepted map[string]bool // recipients whose DATA got a 250
}

// load submits messages over drillWorkers connections until trigger has
// run (it runs once, from the goroutine that received the 250 numbered
// at). Failures before the trigger fail the test.
func load(t *testing.T, p *proc, secret string, round, at int, trigger func()) *drillRound {
	t.Helper()
	r := &drillRound{accepted: map[string]bool{}}
	var (
		seq, count atomic.Int64
		fired      atomic.Bool
		once       sync.Once
		wg         sync.WaitGroup
	)
	for w := 0; w < drillWorkers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !fired.Load() {
				to := fmt.Sprintf("r%d-%d@example.net", round, seq.Add(1))
				r.mu.Lock()
				r.tried = append(r.tried, to)
				r.mu.Unlock()
				err := submit(p.SMTP, staffEmail, secret, newMsg(staffEmail, to, to), func() {
					r.mu.Lock()
					r.accepted[to] = true
					r.mu.Unlock()
					if count.Add(1) == int64(at) {
						once.Do(func() { fired.Store(true); trigger() })
					}
				})
				if err != nil && !fired.Load() {
					t.Errorf("round %d: %s refused while the server was up: %v (code %d)", round, to, err, smtpCode(err))
					fired.Store(true)
				}
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	return r
}

// TestCrashDrill: three SIGKILLs and one SIGTERM at random points of a
// concurrent SMTP load, then a last start to let the outbox drain.
func TestCrashDrill(t *testing.T) {
	if testing.Short() {
		t.Skip("crash drill: several server starts under load")
	}
	seed := rand.Uint64()
	rng := rand.New(rand.NewPCG(seed, seed))
	t.Logf("seed %d", seed)
	dir := t.TempDir()
	cfgPath := filepath.Join(t.TempDir(), "drill.toml")
	writeFile(t, cfgPath, []byte(drillConfig), 0o600)
	env := childEnv("PHIGATE_CONFIG=" + cfgPath)
	start := func() *proc {
		p := startProc(t, env, "serve", "--dev", "--data", dir,
			"--smtp", "127.0.0.1:0", "--smtps", "127.0.0.1:0", "--http", "127.0.0.1:0", "--metrics", "127.0.0.1:0")
		p.waitBanner()
		return p
	}
	const kills = 3
	var rounds []*drillRound
	var secret string
	for round := 0; round <= kills; round++ {
		p := start()
		if round == 0 {
			// The first start makes the data folder the CLI works on.
			secret = addStaff(t, dir, staffEmail, "drill")
		}
		at := 5 + rng.IntN(30)
		if round < kills {
			var killErr error
			rounds = append(rounds, load(t, p, secret, round, at, func() { killErr = p.kill9() }))
			if killErr != nil {
				t.Fatal(killErr)
			}
			p.assertKilled()
			continue
		}
		// The SIGTERM round: transactions under way finish, then exit 0.
		var termErr error
		rounds = append(rounds, load(t, p, secret, round, at, func() { termErr = p.cmd.Process.Signal(syscall.SIGTERM) }))
		if termErr != nil {
			t.Fatal(termErr)
		}
		p.waitExit()
		if c := p.exitCode(); c != 0 {
			t.Fatalf("exit %d after SIGTERM, want 0\n%s", c, p.tail())
		}
	}

	// A last run sends what the outbox still holds.
	var accepted []string
	for _, r := range rounds {
		for to := range r.accepted {
			accepted = append(accepted, to)
		}
	}
	p := start()
	waitNotices(t, p, dir, accepted, 1)
	got := waitQuiet(t, dir, byRecipient(readNotices(t, dir)))
	p.stop()

	st, err := store.OpenSQLite(context.Background(), filepath.Join(dir, "phigate.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	db := st.DB()
	var integrity string
	if err := db.QueryRow(`PRAGMA integrity_check`).Scan(&integrity); err != nil || integrity != "ok" {
		t.Errorf("integrity_check: %q %v", integrity, err)
	}
	if r := runCLI(t, "", "audit", "verify", "--data", dir); r.code != 0 {
		t.Errorf("audit verify: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	checkDrill(t, db, dir, rounds, got, kills)
}

var noticeOutboxID = regexp.MustCompile(`(?i)\nMessage-Id: <([^@>]+)@`)

// checkDrill checks the stored state against what the clients saw.
func checkDrill(t *testing.T, db *sql.DB, dir string, rounds []*drillRound, got map[string][]notice, kills int) {
	t.Helper()
	// Every committed notice went out.
	var unsent int
	if err := db.QueryRow(`SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL AND kind = $1`, notify.KindNewMessage).Scan(&unsent); err != nil {
		t.Fatal(err)
	}
	if unsent != 0 {
		t.Errorf("%d notices never sent", unsent)
	}
	last := len(rounds) - 1
	dups, total := 0, 0
	for round, r := range rounds {
		for _, to := range r.tried {
			ns := got[to]
			switch {
			case r.accepted[to] && len(ns) == 0:
				t.Errorf("round %d: %s got a 250 but no notice", round, to)
				continue
			case len(ns) == 0:
				continue // not committed: the client never had a 250
			case !r.accepted[to] && round == last:
				// After SIGTERM a stored message always had its 250 delivered.
				t.Errorf("SIGTERM round: %s stored but its client saw no 250", to)
			}
			total++
			dups += len(ns) - 1
			if round == last && len(ns) > 1 {
				// No kill followed these: a stop finishes or hands back.
				t.Errorf("SIGTERM round: %s got %d notices", to, len(ns))
			}
			checkStoredOnce(t, db, to, ns)
		}
	}
	// A notice is sent again only if the kill came between its send and
	// its mark: at most one per dispatcher worker per kill.
	if limit := kills * config.Default().Smarthost.Connections; dups > limit {
		t.Errorf("%d duplicate notices over %d kills, want at most %d (the sends in flight)", dups, kills, limit)
	}
	t.Logf("%d messages stored; %d duplicate notices over %d kills", total, dups, kills)
}

// checkStoredOnce: the recipient's notices all lead (through their outbox
// rows) to one user with exactly one message, which has exactly one
// message.accept entry in the audit trail.
func checkStoredOnce(t *testing.T, db *sql.DB, to string, ns []notice) {
	t.Helper()
	users := map[string]bool{}
	for _, n := range ns {
		m := noticeOutboxID.FindSubmatch(n.raw)
		if m == nil {
			t.Errorf("%s: notice without Message-Id", n.file)
			return
		}
		var user, msgID string
		if err := db.QueryRow(`SELECT user_id, message_id FROM outbox WHERE id = $1`, string(m[1])).Scan(&user, &msgID); err != nil {
			t.Errorf("%s: outbox row %s: %v", to, m[1], err)
			return
		}
		users[user] = true
	}
	if len(users) != 1 {
		t.Errorf("%s: notices for %d accounts", to, len(users))
		return
	}
	for user := range users {
		var n int
		var msgID string
		if err := db.QueryRow(`SELECT COUNT(*), MIN(id) FROM messages WHERE recipient_id = $1`, user).Scan(&n, &msgID); err != nil {
			t.Fatal(err)
		}
		if n != 1 {
			t.Errorf("%s: %d messages stored, want 1", to, n)
			continue
		}
		var entries int
		if err := db.QueryRow(`SELECT COUNT(*) FROM audit_log WHERE action = 'message.accept' AND object_id = $1`, msgID).Scan(&entries); err != nil {
			t.Fatal(err)
		}
		if entries != 1 {
			t.Errorf("%s: message has %d message.accept entries, want 1", to, entries)
		}
	}
}
