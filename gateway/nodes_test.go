package gateway_test

// Multi-node tests (issue #3): two gateways on one data folder (one SQLite
// database, one set of keys) and one private redis-server are two "nodes"
// behind a load balancer. A session cookie is a bearer token for the whole
// site, so a test moves it from one node to the other by hand.
//
// Every test also runs on a single node without Redis (sessions, counters
// and events in process), to show the rules are the same either way.

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/phigate/phigate/config"
	"github.com/phigate/phigate/internal/e2e"
	"github.com/phigate/phigate/internal/redistest"
	"github.com/phigate/phigate/portal"
	"github.com/redis/go-redis/v9"
)

// nodesPrefix is the Redis key prefix of the two-node runs (not the
// default, to show redis.prefix is honoured).
const nodesPrefix = "phigate-nodes:"

// nodePair is one run's pair of nodes. In-process, A and B are the same
// gateway and RDB is nil.
type nodePair struct {
	A, B *e2e.Harness
	RDB  redis.UniversalClient
}

// forNodes runs f twice: on two nodes sharing a real (private) Redis, and on
// one node without Redis.
func forNodes(t *testing.T, f func(t *testing.T, n nodePair)) {
	t.Run("redis-two-nodes", func(t *testing.T) {
		srv := redistest.Start(t) // skips without redis-server (fails in CI)
		dir := t.TempDir()
		cfg := func() config.Config {
			c := nodeConfig(dir)
			c.Redis.URL = "redis://" + srv.Addr + "/0"
			c.Redis.Prefix = nodesPrefix
			return c
		}
		// A first: it creates the dev keys, TLS certificate and database
		// that B then opens.
		a := e2e.Start(t, cfg())
		b := e2e.Start(t, cfg())
		if a.BaseURL == b.BaseURL {
			t.Fatalf("both nodes at %s", a.BaseURL)
		}
		if a.G.Redis == nil || b.G.Redis == nil {
			t.Fatal("redis.url set but a node is not using Redis")
		}
		f(t, nodePair{A: a, B: b, RDB: srv.Client(t)})
	})
	t.Run("in-process-one-node", func(t *testing.T) {
		h := e2e.Start(t, nodeConfig(t.TempDir()))
		if h.G.Redis != nil {
			t.Fatal("no redis.url, yet the node uses Redis")
		}
		f(t, nodePair{A: h, B: h})
	})
}

func nodeConfig(dir string) config.Config {
	c := e2e.Config(dir)
	// Every request comes from 127.0.0.1: keep the per-IP throttle out of
	// the way of the per-account rules under test.
	c.Security.IPMaxFailures = 1000
	return c
}

// nodeCookie returns the session cookie in c's jar.
func nodeCookie(t *testing.T, c *e2e.Client) string {
	t.Helper()
	for _, k := range c.HTTP.Jar.Cookies(mustURL(c.Base)) {
		if k.Name == portal.CookieName && k.Value != "" {
			return k.Value
		}
	}
	t.Fatalf("no %s cookie for %s", portal.CookieName, c.Base)
	return ""
}

// nodeClient returns a fresh client for node h holding token, as a browser
// sent to h by the load balancer would.
func nodeClient(h *e2e.Harness, token string) *e2e.Client {
	c := h.Client()
	c.HTTP.Jar.SetCookies(mustURL(h.BaseURL), []*http.Cookie{{Name: portal.CookieName, Value: token, Path: "/", Secure: true}})
	return c
}

// nodeWantEnded checks that token is refused on h with 401 and the reason.
func nodeWantEnded(t *testing.T, h *e2e.Harness, node, token, reason string) {
	t.Helper()
	st, _, b := nodeClient(h, token).Do("GET", "/api/v1/messages", nil, nil)
	var e map[string]any
	_ = json.Unmarshal(b, &e)
	if st != http.StatusUnauthorized || e["reason"] != reason || e["error"] != "session_expired" {
		t.Errorf("node %s: ended session answered %d %s, want 401 with reason %q", node, st, b, reason)
	}
}

// nodeProbe is one API call with token on h, safe outside the test goroutine.
func nodeProbe(h *e2e.Harness, token string) (int, string, error) {
	c := nodeClient(h, token)
	resp, err := c.HTTP.Get(c.Base + "/api/v1/messages")
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	var e struct {
		Reason string `json:"reason"`
	}
	b, _ := io.ReadAll(resp.Body)
	_ = json.Unmarshal(b, &e)
	return resp.StatusCode, e.Reason, nil
}

// nodeLogin signs in through the API without touching t (for goroutines); it
// returns the status and the session cookie set.
func nodeLogin(h *e2e.Harness, email, pw string) (int, string, error) {
	c := h.Client()
	body, _ := json.Marshal(map[string]string{"email": email, "password": pw})
	resp, err := c.HTTP.Post(c.Base+"/api/v1/login", "application/json", strings.NewReader(string(body)))
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	for _, k := range resp.Cookies() {
		if k.Name == portal.CookieName {
			return resp.StatusCode, k.Value, nil
		}
	}
	return resp.StatusCode, "", nil
}

// nodeRedisKeys checks that Redis holds the shared state under the
// configured prefix, and no key names a person.
func nodeRedisKeys(t *testing.T, n nodePair, mustContain ...string) {
	t.Helper()
	if n.RDB == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	keys, err := n.RDB.Keys(ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	all := strings.Join(keys, "\n")
	for _, k := range keys {
		if !strings.HasPrefix(k, nodesPrefix) {
			t.Errorf("Redis key %q lacks the prefix %q", k, nodesPrefix)
		}
		if strings.Contains(k, "@") {
			t.Errorf("Redis key %q names an address", k)
		}
	}
	for _, s := range mustContain {
		if !strings.Contains(all, s) {
			t.Errorf("no Redis key mentions %q; keys:\n%s", s, all)
		}
	}
}

func nodeSessionID(token string) string { id, _, _ := strings.Cut(token, "."); return id }

// TestNodesShareSessions: a session opened on one node is usable on the
// other (the record is shared and the cookie's secret unwraps the key
// there); a sign-in on the other node ends it on both, with the reason.
func TestNodesShareSessions(t *testing.T) {
	forNodes(t, func(t *testing.T, n nodePair) {
		pass := n.A.AddStaff(staff)
		alice, id := claimNew(t, n.A, pass, "alice@example.net", patientPW)
		old := nodeCookie(t, alice)
		nodeRedisKeys(t, n, nodeSessionID(old))

		// Node B reads (decrypts) the message with A's session.
		var m msgJSON
		nodeClient(n.B, old).JSON("GET", "/api/v1/messages/"+id, nil, 200, &m)
		if m.Text != "body for alice@example.net" || m.Signature != "verified" {
			t.Fatalf("node B with A's session: %q %s", m.Text, m.Signature)
		}

		// A new sign-in on B ends the older session everywhere.
		second := n.B.Client()
		second.JSON("POST", "/api/v1/login", map[string]string{"email": "alice@example.net", "password": patientPW}, 200, nil)
		fresh := nodeCookie(t, second)
		if fresh == old {
			t.Fatal("a new sign-in reused the session token")
		}
		nodeWantEnded(t, n.A, "A", old, "replaced")
		nodeWantEnded(t, n.B, "B", old, "replaced")
		// A browser page is sent to sign in, told why.
		st, hdr, _ := nodeClient(n.A, old).Do("GET", "/inbox", nil, nil)
		if st != http.StatusSeeOther || hdr.Get("Location") != "/login?ended=replaced" {
			t.Errorf("page with the replaced session on A: %d %q", st, hdr.Get("Location"))
		}
		// The new one works on both.
		for _, h := range []*e2e.Harness{n.A, n.B} {
			var m msgJSON
			nodeClient(h, fresh).JSON("GET", "/api/v1/messages/"+id, nil, 200, &m)
			if m.Text != "body for alice@example.net" {
				t.Errorf("%s with the new session: %q", h.BaseURL, m.Text)
			}
		}
		nodeRedisKeys(t, n, nodeSessionID(fresh))
	})
}

// TestNodesRacingSignIns: ten simultaneous sign-ins of one user, spread
// over both nodes, leave exactly one live session, the same on every node;
// every other session was "replaced".
func TestNodesRacingSignIns(t *testing.T) {
	forNodes(t, func(t *testing.T, n nodePair) {
		pass := n.A.AddStaff(staff)
		first, _ := claimNew(t, n.A, pass, "race@example.net", patientPW)
		tokens := []string{nodeCookie(t, first)}

		const racers = 10
		type result struct {
			status int
			token  string
			err    error
		}
		res := make([]result, racers)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range racers {
			h := n.A
			if i%2 == 1 {
				h = n.B
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				st, tok, err := nodeLogin(h, "race@example.net", patientPW)
				res[i] = result{st, tok, err}
			}()
		}
		close(start)
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(60 * time.Second):
			t.Fatal("racing sign-ins did not finish within 60 s")
		}
		for i, r := range res {
			if r.err != nil || r.status != 200 || r.token == "" {
				t.Fatalf("sign-in %d: %d %v (cookie %t)", i, r.status, r.err, r.token != "")
			}
			tokens = append(tokens, r.token)
		}

		live := 0
		for i, tok := range tokens {
			stA, whyA, errA := nodeProbe(n.A, tok)
			stB, whyB, errB := nodeProbe(n.B, tok)
			if errA != nil || errB != nil {
				t.Fatal(errA, errB)
			}
			switch {
			case stA == 200 && stB == 200:
				live++
			case stA == 401 && stB == 401 && whyA == "replaced" && whyB == "replaced":
			default:
				t.Errorf("session %d: node A %d %q, node B %d %q; want live on both or replaced on both", i, stA, whyA, stB, whyB)
			}
		}
		if live != 1 {
			t.Errorf("%d live sessions after racing sign-ins, want exactly 1", live)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		for _, h := range []*e2e.Harness{n.A, n.B} {
			if c, err := h.G.Sessions.Store.Count(ctx); err != nil || c != 1 {
				t.Errorf("%s counts %d live sessions (%v), want 1", h.BaseURL, c, err)
			}
		}
	})
}

// TestNodesShareLockout: failures on either node count toward one lock-out,
// which holds on both; an admin's unlock on one node frees the account on
// the other.
func TestNodesShareLockout(t *testing.T) {
	forNodes(t, func(t *testing.T, n nodePair) {
		const who = "lock@example.net"
		pass := n.A.AddStaff(staff)
		c, _ := claimNew(t, n.A, pass, who, patientPW)
		c.JSON("POST", "/api/v1/logout", nil, 204, nil)

		on := []*e2e.Harness{n.A, n.B}
		lim := n.A.Cfg.Security.LockoutFailures
		for i := range lim {
			on[i%2].Client().JSON("POST", "/api/v1/login", map[string]string{"email": who, "password": fmt.Sprintf("wrong password %d", i)}, 401, nil)
		}
		for i, h := range on {
			var e struct{ Error, Message string }
			h.Client().JSON("POST", "/api/v1/login", map[string]string{"email": who, "password": patientPW}, 423, &e)
			if e.Error != "locked" {
				t.Errorf("node %c, right password while locked: %+v", 'A'+i, e)
			}
		}
		nodeRedisKeys(t, n, "lim:")

		addAdmin(t, n.A, "admin@clinic.example")
		admin, _ := signInStaff(t, n.B, "admin@clinic.example", adminPW, time.Now())
		u, err := n.A.G.Identity.UserByEmail(context.Background(), who)
		if err != nil {
			t.Fatal(err)
		}
		admin.JSON("POST", "/api/v1/admin/users/"+u.ID+"/unlock", nil, 200, nil)
		n.A.Client().JSON("POST", "/api/v1/login", map[string]string{"email": who, "password": patientPW}, 200, nil)
	})
}

// TestNodesDisableEndsSessionEverywhere: an admin on node B disables a
// staff member signed in (with the second factor) on node A; A refuses the
// session at once, saying why.
func TestNodesDisableEndsSessionEverywhere(t *testing.T) {
	forNodes(t, func(t *testing.T, n nodePair) {
		n.A.AddStaff(staff)
		addAdmin(t, n.A, "admin@clinic.example")
		now := time.Now()
		staffClient, _ := signInStaff(t, n.A, staff, "staff portal password 123", now)
		tok := nodeCookie(t, staffClient)
		admin, _ := signInStaff(t, n.B, "admin@clinic.example", adminPW, now)
		u, err := n.A.G.Identity.UserByEmail(context.Background(), staff)
		if err != nil {
			t.Fatal(err)
		}
		admin.JSON("POST", "/api/v1/admin/users/"+u.ID+"/disable", nil, 200, nil)
		var e struct {
			Reason string `json:"reason"`
		}
		staffClient.JSON("GET", "/api/v1/messages", nil, 401, &e)
		if e.Reason != "disabled" {
			t.Errorf("node A, disabled account's session: reason %q, want disabled", e.Reason)
		}
		nodeWantEnded(t, n.B, "B", tok, "disabled")
		// The admin's own session is untouched.
		admin.JSON("GET", "/api/v1/admin/users", nil, 200, nil)
	})
}

// nodeWSDial opens node h's websocket with the session cookie token.
func nodeWSDial(t *testing.T, h *e2e.Harness, token string) *websocket.Conn {
	t.Helper()
	d := websocket.Dialer{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, HandshakeTimeout: 5 * time.Second}
	hdr := http.Header{}
	hdr.Set("Origin", "https://"+h.HTTPS)
	hdr.Set("Cookie", portal.CookieName+"="+token)
	conn, resp, err := d.Dial("wss://"+h.HTTPS+"/ws", hdr)
	if err != nil {
		st := 0
		if resp != nil {
			st = resp.StatusCode
		}
		t.Fatalf("websocket to %s: %v (HTTP %d)", h.HTTPS, err, st)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

type nodeWSMsg struct {
	Type      string `json:"type"`
	ExpiresIn int    `json:"expires_in"`
	Reason    string `json:"reason"`
}

// TestNodesWebsocketHearsReplacement: pages open on both nodes hear at once
// (over the event bus: Redis pub/sub between nodes) that their session was
// replaced by a sign-in on node B.
func TestNodesWebsocketHearsReplacement(t *testing.T) {
	forNodes(t, func(t *testing.T, n nodePair) {
		pass := n.A.AddStaff(staff)
		c, _ := claimNew(t, n.A, pass, "ws@example.net", patientPW)
		tok := nodeCookie(t, c)

		// The handler re-reads the session every 5 s (wsStateEvery) after
		// its first report; an "ended" before that deadline can only have
		// come from the event bus.
		dialed := time.Now()
		deadline := dialed.Add(4500 * time.Millisecond)
		conns := map[string]*websocket.Conn{"A": nodeWSDial(t, n.A, tok), "B": nodeWSDial(t, n.B, tok)}
		for node, conn := range conns {
			conn.SetReadDeadline(deadline)
			var m nodeWSMsg
			if err := conn.ReadJSON(&m); err != nil || m.Type != "state" || m.ExpiresIn <= 0 {
				t.Fatalf("node %s: first websocket message %+v, %v; want a state report", node, m, err)
			}
		}

		n.B.Client().JSON("POST", "/api/v1/login", map[string]string{"email": "ws@example.net", "password": patientPW}, 200, nil)

		for node, conn := range conns {
			var m nodeWSMsg
			for {
				if err := conn.ReadJSON(&m); err != nil {
					t.Fatalf("node %s: no \"ended\" within %v of connecting (before the 5 s re-check): %v",
						node, deadline.Sub(dialed), err)
				}
				if m.Type != "state" {
					break
				}
			}
			if m.Type != "ended" || m.Reason != "replaced" {
				t.Errorf("node %s: websocket said %+v, want ended/replaced", node, m)
			}
		}
		t.Logf("both pages told within %v of connecting", time.Since(dialed).Round(time.Millisecond))
	})
}
