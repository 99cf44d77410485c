package main

// Three-node crash drill (issue 11.3): three `phigate serve` processes on
// one data folder (the same dev keys, certificate and maildrop), one
// PostgreSQL database and one private Redis take SMTP load together; one
// of them is killed with SIGKILL mid-run. Then: every 250'd message is
// stored once with one message.accept entry, every notice goes out at least
// once, and a notice goes out twice only if the killed node held its lease.
//
// The killed node's leases run for 5 minutes (gateway.go); the test does
// not wait them out but moves their next attempt to now once the live
// nodes have sent everything else, which is what the lease's end does.

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/phigate/phigate/config"
	"github.com/phigate/phigate/internal/pgtest"
	"github.com/phigate/phigate/internal/redistest"
	"github.com/phigate/phigate/notify"
)

const (
	drillNodes     = 3
	workersPerNode = 2
	afterKill      = 30 // messages the live nodes accept after the kill
	// nodeLease is how long a node on Redis leases the notices it takes
	// (gateway.go): a lease ending by killAt+nodeLease was the victim's.
	nodeLease = 5 * time.Minute
)

// nodesDrillConfig: one staff account sends everything, over all nodes at
// once; the killed node's transaction slots stay held until their lease
// ends, so the per-account cap is lifted too.
const nodesDrillConfig = "[smtp.senders]\nmessages_per_hour = 0\nconcurrent_transactions = 64\n"

// inProcess runs `phigate args...` in this process (the environment is the
// test's, set with t.Setenv) and returns its exit code and output.
func inProcess(stdin string, args ...string) (int, string, string) {
	var out, errOut bytes.Buffer
	code := run(args, strings.NewReader(stdin), &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestThreeNodesKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("three-node drill: real PostgreSQL, Redis and three servers")
	}
	seed := rand.Uint64()
	rng := rand.New(rand.NewPCG(seed, seed))
	t.Logf("seed %d", seed)

	pgURL := pgtest.URL(t)   // skips without PostgreSQL (fails with CI=true)
	rs := redistest.Start(t) // likewise for redis-server
	dir := t.TempDir()
	cfgPath := filepath.Join(t.TempDir(), "nodes.toml")
	writeFile(t, cfgPath, []byte(nodesDrillConfig), 0o600)
	shared := []string{"PHIGATE_STORE_URL=" + pgURL, "PHIGATE_REDIS_URL=redis://" + rs.Addr + "/0"}
	env := childEnv(append([]string{"PHIGATE_CONFIG=" + cfgPath}, shared...)...)
	start := func() *proc {
		p := startProc(t, env, "serve", "--dev", "--data", dir,
			"--smtp", "127.0.0.1:0", "--smtps", "127.0.0.1:0", "--http", "127.0.0.1:0", "--metrics", "127.0.0.1:0")
		p.waitBanner()
		return p
	}
	// The first node makes the dev keys the others (and the CLI) open.
	nodes := []*proc{start()}
	for _, kv := range append(shared, "PHIGATE_KEYS_PASSWORD_TIME=1", "PHIGATE_KEYS_PASSWORD_MEMORY_KIB=8192", "PHIGATE_KEYS_PASSWORD_THREADS=1") {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	t.Setenv("PHIGATE_CONFIG", "") // the CLI opens the dev layout
	if code, out, errOut := inProcess(staffPassword+"\n", "user", "add", "--data", dir, "--email", staffEmail, "--role", "staff", "--password-stdin"); code != 0 {
		t.Fatalf("user add: exit %d\n%s%s", code, out, errOut)
	}
	code, out, errOut := inProcess("", "user", "app-password", "--data", dir, "--email", staffEmail, "--name", "nodes")
	if code != 0 {
		t.Fatalf("user app-password: exit %d\n%s%s", code, out, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	secret := strings.TrimSpace(lines[len(lines)-1])
	for len(nodes) < drillNodes {
		nodes = append(nodes, start())
	}

	victim := rng.IntN(drillNodes)
	at := 10 + rng.IntN(20)
	// The kill comes up to 4 ms after a 250 of the victim's, to fall at
	// varied points of the notice send that 250 starts.
	delay := time.Duration(rng.IntN(4000)) * time.Microsecond
	loads, killAt := loadNodes(t, nodes, secret, victim, at, delay)
	nodes[victim].assertKilled()
	var live []*proc
	for i, p := range nodes {
		if i != victim {
			live = append(live, p)
		}
	}

	db, err := sql.Open("pgx", pgURL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	leased := endDeadLeases(t, db, killAt)

	var accepted []string
	for _, r := range loads {
		for to := range r.accepted {
			accepted = append(accepted, to)
		}
	}
	waitNotices(t, live[0], dir, accepted, 1)
	// A notice the victim sent but did not mark goes out again at a live
	// node's next poll: wait for the outbox, not just the maildrop. A
	// notice is in the maildrop before it is marked sent.
	waitOutboxSent(t, db)
	got := byRecipient(readNotices(t, dir))
	for _, p := range live {
		p.stop()
	}
	if code, out, errOut := inProcess("", "audit", "verify", "--data", dir); code != 0 {
		t.Errorf("audit verify: exit %d\n%s%s", code, out, errOut)
	}
	if _, err := os.Stat(filepath.Join(dir, "phigate.db")); err == nil {
		t.Error("a node made a SQLite database in the data folder: not every node was on PostgreSQL")
	}
	checkNodesDrill(t, db, loads, got, leased, victim)
}

// loadNodes submits messages over workersPerNode connections to each node.
// Once at messages are accepted (at least 3 by the victim) the victim gets
// SIGKILL, delay after that 250; the live nodes then take afterKill more
// and the load stops. A refusal fails the test, except on the victim once
// it is killed.
func loadNodes(t *testing.T, nodes []*proc, secret string, victim, at int, delay time.Duration) ([]*drillRound, time.Time) {
	t.Helper()
	loads := make([]*drillRound, len(nodes))
	for i := range loads {
		loads[i] = &drillRound{accepted: map[string]bool{}}
	}
	var (
		seq, total, sinceKill atomic.Int64
		killed, done          atomic.Bool
		once                  sync.Once
		wg                    sync.WaitGroup
		killAt                time.Time // written in once, read after wg.Wait
	)
	kill := func() {
		time.Sleep(delay)
		killed.Store(true)
		if err := nodes[victim].kill9(); err != nil {
			t.Errorf("kill -9: %v", err)
			done.Store(true)
		}
		killAt = time.Now()
	}
	for n, p := range nodes {
		r := loads[n]
		for w := 0; w < workersPerNode; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for !done.Load() && !(n == victim && killed.Load()) {
					to := fmt.Sprintf("n%d-%d@example.net", n, seq.Add(1))
					r.mu.Lock()
					r.tried = append(r.tried, to)
					r.mu.Unlock()
					err := submit(p.SMTP, staffEmail, secret, newMsg(staffEmail, to, to), func() {
						r.mu.Lock()
						r.accepted[to] = true
						mine := len(r.accepted)
						r.mu.Unlock()
						if total.Add(1) >= int64(at) && n == victim && mine >= 3 {
							once.Do(kill)
						}
						if killed.Load() && n != victim && sinceKill.Add(1) >= afterKill {
							done.Store(true)
						}
					})
					if err != nil && !(n == victim && killed.Load()) {
						t.Errorf("node %d: %s refused: %v (code %d)", n, to, err, smtpCode(err))
						done.Store(true)
					}
				}
			}()
		}
	}
	wg.Wait()
	if !killed.Load() {
		t.Error("the load ended without the kill")
	}
	if t.Failed() {
		t.FailNow()
	}
	return loads, killAt
}

// endDeadLeases waits until every unsent notice is one the killed node
// leased (its lease ends by killAt+nodeLease; one a live node took after the
// kill ends later, and the live nodes send theirs in milliseconds), then
// ends those leases. It returns their outbox ids.
func endDeadLeases(t *testing.T, db *sql.DB, killAt time.Time) map[string]bool {
	t.Helper()
	ctx := context.Background()
	deadLimit := killAt.Add(nodeLease).UnixNano()
	deadline := time.Now().Add(noticeTimeout)
	for {
		ids, others := map[string]bool{}, 0
		now := time.Now().UnixNano()
		rows, err := db.QueryContext(ctx, `SELECT id, next_attempt_at FROM outbox WHERE sent_at IS NULL AND kind = $1`, notify.KindNewMessage)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var id string
			var next int64
			if err := rows.Scan(&id, &next); err != nil {
				t.Fatal(err)
			}
			if next > now && next <= deadLimit {
				ids[id] = true
			} else {
				others++ // due, or leased by a live node
			}
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		rows.Close()
		if others == 0 {
			for id := range ids {
				if _, err := db.ExecContext(ctx, `UPDATE outbox SET next_attempt_at = $1 WHERE id = $2 AND sent_at IS NULL`, now, id); err != nil {
					t.Fatal(err)
				}
			}
			t.Logf("%d notices leased by the killed node, their leases ended", len(ids))
			return ids
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s %d notices are still due or leased by a live node", noticeTimeout, others)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitOutboxSent polls until no notice is left unsent (bounded).
func waitOutboxSent(t *testing.T, db *sql.DB) {
	t.Helper()
	deadline := time.Now().Add(noticeTimeout)
	for {
		var unsent int
		if err := db.QueryRow(`SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL AND kind = $1`, notify.KindNewMessage).Scan(&unsent); err != nil {
			t.Fatal(err)
		}
		if unsent == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s %d notices are still unsent", noticeTimeout, unsent)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// checkNodesDrill checks the stored state against what the clients saw.
func checkNodesDrill(t *testing.T, db *sql.DB, loads []*drillRound, got map[string][]notice, leased map[string]bool, victim int) {
	t.Helper()
	var unsent, stored int
	if err := db.QueryRow(`SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL AND kind = $1`, notify.KindNewMessage).Scan(&unsent); err != nil {
		t.Fatal(err)
	}
	if unsent != 0 {
		t.Errorf("%d notices never sent", unsent)
	}
	if err := db.QueryRow(`SELECT COUNT(*) FROM messages`).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	total, dups, lost := 0, 0, 0
	for n, r := range loads {
		if len(r.accepted) == 0 {
			t.Errorf("node %d accepted nothing", n)
		}
		for _, to := range r.tried {
			ns := got[to]
			switch {
			case r.accepted[to] && len(ns) == 0:
				t.Errorf("node %d: %s got a 250 but no notice", n, to)
				continue
			case len(ns) == 0:
				continue // not committed: its client never had a 250
			case !r.accepted[to] && n != victim:
				t.Errorf("node %d (live): %s stored but its client saw no 250", n, to)
			case !r.accepted[to]:
				lost++ // committed by the victim, the 250 lost with it
			}
			total++
			dups += len(ns) - 1
			if len(ns) > 1 {
				for _, x := range ns {
					if m := noticeOutboxID.FindSubmatch(x.raw); m != nil && !leased[string(m[1])] {
						t.Errorf("%s: %d notices, but the killed node did not hold its lease", to, len(ns))
						break
					}
				}
			}
			checkStoredOnce(t, db, to, ns)
		}
	}
	if stored != total {
		t.Errorf("%d messages stored, %d recipients have notices", stored, total)
	}
	// A notice goes out twice only if the kill fell between its send and
	// its mark: at most one per dispatcher worker of the killed node.
	if limit := config.Default().Smarthost.Connections; dups > limit {
		t.Errorf("%d duplicate notices, want at most %d (the killed node's sends in flight)", dups, limit)
	}
	t.Logf("%d nodes, node %d killed: %d messages stored (%d committed without the client seeing the 250); %d of %d leased notices sent twice",
		len(loads), victim, total, lost, dups, len(leased))
}
