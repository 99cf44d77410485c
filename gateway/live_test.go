package gateway_test

// Live portal events (issue 10.1, 10.2): a change to a message reaches the
// open pages of its recipient and sender on any node, as a websocket frame
// with the kind of change and the message's id only; the page then reads
// through the API.

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/phigate/phigate/events"
	"github.com/phigate/phigate/internal/e2e"
	"github.com/phigate/phigate/portal"
	"github.com/redis/go-redis/v9"
)

const staffPortalPW = "staff portal password 123"

// liveFrame is a websocket frame as a page hears it.
type liveFrame struct {
	Type      string `json:"type"`
	Reason    string `json:"reason"`
	Event     string `json:"event"`
	MessageID string `json:"message_id"`
	Box       string `json:"box"`
}

// liveConn is one open page's websocket; it keeps every frame it read, for
// the canary scan.
type liveConn struct {
	name string
	conn *websocket.Conn
	raw  [][]byte
}

func dialLive(t *testing.T, h *e2e.Harness, name, token string) *liveConn {
	t.Helper()
	c := &liveConn{name: name, conn: nodeWSDial(t, h, token)}
	// The first frame is the session's state: the handler has subscribed
	// by then, so every event published from now on reaches it.
	if f := c.read(t); f.Type != "state" {
		t.Fatalf("%s: first frame %+v, want state", name, f)
	}
	return c
}

func (c *liveConn) read(t *testing.T) liveFrame {
	t.Helper()
	c.conn.SetReadDeadline(time.Now().Add(15 * time.Second))
	_, b, err := c.conn.ReadMessage()
	if err != nil {
		t.Fatalf("%s: websocket: %v", c.name, err)
	}
	c.raw = append(c.raw, b)
	var f liveFrame
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatalf("%s: frame %q: %v", c.name, b, err)
	}
	return f
}

// next returns the next message frame (state reports are skipped).
func (c *liveConn) next(t *testing.T) liveFrame {
	t.Helper()
	for {
		f := c.read(t)
		switch f.Type {
		case "state":
			continue
		case "message":
			return f
		}
		t.Fatalf("%s: frame %+v, want a message frame", c.name, f)
	}
}

// want checks the next message frame.
func (c *liveConn) want(t *testing.T, event, box, id string) {
	t.Helper()
	if f := c.next(t); f.Event != event || f.Box != box || f.MessageID != id {
		t.Fatalf("%s: frame %+v, want %s/%s for %s", c.name, f, event, box, id)
	}
}

// sendLive submits one message over SMTP on h and returns nothing; the
// caller learns its id from the frames.
func sendLive(t *testing.T, h *e2e.Harness, pass, rcpt, subject, body, attName string) {
	t.Helper()
	msg := e2e.Multipart(staff, "Dr Lee", rcpt, subject, body, "<p>"+body+"</p>", attName, []byte(body))
	if err := e2e.Send(e2e.SendOptions{Addr: h.SMTP, User: staff, Pass: pass, From: staff, To: []string{rcpt}, Msg: msg}); err != nil {
		t.Fatal(err)
	}
}

// TestLiveEventsAnyNode: with pages open on node B, a message accepted over
// SMTP on node A, its first reading, a recall, the purge and a quarantine
// release each reach the recipient's inbox and the sender's Sent page as a
// frame naming only the change and the message id; another patient's page
// hears nothing of it; no frame and no Redis pub/sub message carries any
// of the message's canaries or an address.
func TestLiveEventsAnyNode(t *testing.T) {
	forNodes(t, func(t *testing.T, n nodePair) {
		ctx := context.Background()
		pass := n.A.AddStaff(staff)
		addAdmin(t, n.A, "admin@clinic.example")
		alice, _ := claimNew(t, n.A, pass, "alice@example.net", patientPW)
		bob, _ := claimNew(t, n.A, pass, "bob@example.org", patientPW)
		staffC, _ := signInStaff(t, n.A, staff, staffPortalPW, time.Now())
		aliceTok, bobTok, staffTok := nodeCookie(t, alice), nodeCookie(t, bob), nodeCookie(t, staffC)

		// Everything the nodes publish on Redis, for the canary scan.
		var pubsub *redisTap
		if n.RDB != nil {
			pubsub = tapRedis(t, n, nodesPrefix+"events")
		}

		aliceWS := dialLive(t, n.B, "alice", aliceTok)
		bobWS := dialLive(t, n.B, "bob", bobTok)
		staffWS := dialLive(t, n.B, "staff", staffTok)

		subject, body, attName := newCanary("SUBJ"), newCanary("BODY"), newCanary("ATT")+".pdf"
		sendLive(t, n.A, pass, "alice@example.net", subject, body, attName)
		f := aliceWS.next(t)
		if f.Event != "new-message" || f.Box != "inbox" || f.MessageID == "" {
			t.Fatalf("alice: frame %+v, want new-message in the inbox", f)
		}
		id := f.MessageID
		staffWS.want(t, "new-message", "sent", id)

		// The page reads what it shows through the API, on node B, as
		// live.js does (not counted as activity).
		live := nodeClient(n.B, aliceTok)
		var list listJSON
		st, _, b := live.Do("GET", "/api/v1/messages", nil, map[string]string{portal.LiveHeader: "1"})
		if st != 200 || json.Unmarshal(b, &list) != nil || len(list.Messages) != 2 || list.Messages[0].ID != id || list.Messages[0].Subject != subject {
			t.Fatalf("alice's list after the frame: %d %s", st, b)
		}

		// Bob's page heard nothing of Alice's message: his first frame is
		// about his own.
		sendLive(t, n.A, pass, "bob@example.org", "for bob", "hello bob", "b.txt")
		if f := bobWS.next(t); f.Event != "new-message" || f.Box != "inbox" || f.MessageID == id {
			t.Fatalf("bob: first frame %+v, want his own new message", f)
		}
		staffWS.next(t) // bob's message on the Sent page

		// First reading (node B): the sender's Sent page and Alice's other
		// tabs hear it.
		nodeClient(n.B, aliceTok).JSON("GET", "/api/v1/messages/"+id, nil, 200, nil)
		aliceWS.want(t, "message-read", "inbox", id)
		staffWS.want(t, "message-read", "sent", id)

		// Recall (node B) and the purge (node A).
		sendLive(t, n.A, pass, "alice@example.net", newCanary("SUBJ2"), newCanary("BODY2"), "r.txt")
		recalled := aliceWS.next(t).MessageID
		staffWS.want(t, "new-message", "sent", recalled)
		nodeClient(n.B, staffTok).JSON("POST", "/api/v1/sent/"+recalled+"/recall", nil, 200, nil)
		aliceWS.want(t, "message-recalled", "inbox", recalled)
		staffWS.want(t, "message-recalled", "sent", recalled)
		if got, err := n.A.G.PurgeOnce(ctx, time.Now()); err != nil || got != 1 {
			t.Fatalf("purge: %d, %v; want the recalled message", got, err)
		}
		aliceWS.want(t, "message-purged", "inbox", recalled)
		staffWS.want(t, "message-purged", "sent", recalled)

		// Quarantine: only the sender hears of a held message; the
		// recipient hears of it when an admin releases it.
		admin, _ := signInStaff(t, n.A, "admin@clinic.example", adminPW, time.Now())
		admin.JSON("PUT", "/api/v1/admin/policy", map[string]string{"body": testPolicy, "note": "live test"}, 200, nil)
		sendLive(t, n.A, pass, "alice@example.net", "[hold] "+newCanary("HELD"), newCanary("HELDBODY"), "h.txt")
		f = staffWS.next(t)
		if f.Event != "message-held" || f.Box != "sent" {
			t.Fatalf("staff: frame %+v, want message-held", f)
		}
		held := f.MessageID
		nodeClient(n.B, nodeCookie(t, admin)).JSON("POST", "/api/v1/admin/quarantine/"+held+"/approve", map[string]string{"note": "checked"}, 200, nil)
		aliceWS.want(t, "new-message", "inbox", held) // her first frame since the purge: the held one never reached her
		staffWS.want(t, "new-message", "sent", held)

		// No frame and no pub/sub message names anything but ids.
		canaries := []string{subject, body, attName, "example.net", "example.org", "clinic.example", "Dr Lee", "@"}
		for _, c := range []*liveConn{aliceWS, bobWS, staffWS} {
			for _, raw := range c.raw {
				for _, s := range canaries {
					if bytes.Contains(raw, []byte(s)) {
						t.Errorf("%s: frame %s contains %q", c.name, raw, s)
					}
				}
			}
		}
		if pubsub != nil {
			msgs := pubsub.stop(t)
			// Eight changes: two arrivals, a reading, an arrival, a recall,
			// a purge, a hold, a release.
			if all := strings.Join(msgs, "\n"); len(msgs) < 8 || !strings.Contains(all, id) || !strings.Contains(all, held) {
				t.Errorf("Redis carried %d events, want every change:\n%s", len(msgs), all)
			}
			for _, m := range msgs {
				for _, s := range canaries {
					if strings.Contains(m, s) {
						t.Errorf("Redis pub/sub message %s contains %q", m, s)
					}
				}
			}
		}
	})
}

// redisTap records every message on a Redis pub/sub channel.
type redisTap struct {
	ps      *redis.PubSub
	rdb     redis.UniversalClient
	channel string
	msgs    chan string
}

func tapRedis(t *testing.T, n nodePair, channel string) *redisTap {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ps := n.RDB.Subscribe(ctx, channel)
	if _, err := ps.Receive(ctx); err != nil { // the subscription's confirmation
		t.Fatal(err)
	}
	t.Cleanup(func() { ps.Close() })
	tap := &redisTap{ps: ps, msgs: make(chan string, 1024)}
	tap.rdb, tap.channel = n.RDB, channel
	go func() {
		for m := range ps.Channel() {
			tap.msgs <- m.Payload
		}
		close(tap.msgs)
	}()
	return tap
}

// stop returns what the channel carried, up to a sentinel published now
// (pub/sub keeps order on one channel, so everything before it is in).
func (r *redisTap) stop(t *testing.T) []string {
	t.Helper()
	const sentinel = `{"kind":"test-sentinel"}`
	if err := r.rdb.Publish(context.Background(), r.channel, sentinel).Err(); err != nil {
		t.Fatal(err)
	}
	var out []string
	timeout := time.After(15 * time.Second)
	for {
		select {
		case m := <-r.msgs:
			if m == sentinel {
				return out
			}
			out = append(out, m)
		case <-timeout:
			t.Fatal("the sentinel did not come back over Redis")
			return nil
		}
	}
}

// TestLiveServerChecksOwnership: the websocket writes a frame only for a
// message whose row names the page's user; an event that names Alice but
// carries Bob's message id (forged, or misrouted) reaches nobody.
func TestLiveServerChecksOwnership(t *testing.T) {
	h := e2e.Start(t, nodeConfig(t.TempDir()))
	pass := h.AddStaff(staff)
	alice, aliceMsg := claimNew(t, h, pass, "alice@example.net", patientPW)
	_, bobMsg := claimNew(t, h, pass, "bob@example.org", patientPW)
	aliceID := liveUserID(t, h, nodeCookie(t, alice))
	ws := dialLive(t, h, "alice", nodeCookie(t, alice))

	ctx := context.Background()
	forged := events.MessageChanged(events.NewMessage, bobMsg, aliceID, "")
	genuine := events.MessageChanged(events.MessageRead, aliceMsg, aliceID, "")
	for _, e := range []events.Event{forged, genuine} {
		if err := h.G.Bus.Publish(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	// Events reach a page in order: the first frame is the genuine one.
	ws.want(t, "message-read", "inbox", aliceMsg)
}

// liveUserID is the account id of a session token.
func liveUserID(t *testing.T, h *e2e.Harness, token string) string {
	t.Helper()
	rec, err := h.G.Sessions.Peek(context.Background(), token)
	if err != nil {
		t.Fatal(err)
	}
	return rec.UserID
}

// TestLiveWebsocketCap: one account holds at most DefaultWSPerUser
// websockets on a node; one more is closed with 1008, and a slot freed by a
// page that closed is usable again.
func TestLiveWebsocketCap(t *testing.T) {
	h := e2e.Start(t, nodeConfig(t.TempDir()))
	pass := h.AddStaff(staff)
	alice, _ := claimNew(t, h, pass, "alice@example.net", patientPW)
	tok := nodeCookie(t, alice)
	var open []*liveConn
	for i := 0; i < portal.DefaultWSPerUser; i++ {
		open = append(open, dialLive(t, h, "tab", tok))
	}
	over := nodeWSDial(t, h, tok)
	over.SetReadDeadline(time.Now().Add(15 * time.Second))
	_, _, err := over.ReadMessage()
	if !websocket.IsCloseError(err, websocket.ClosePolicyViolation) {
		t.Fatalf("websocket %d: %v, want close 1008", portal.DefaultWSPerUser+1, err)
	}
	// Closing one page frees its slot (the server sees the close, then
	// releases; retry until it has).
	open[0].conn.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""))
	open[0].conn.Close()
	waitFor(t, "a freed websocket slot", func() bool {
		c := nodeWSDial(t, h, tok)
		defer c.Close()
		c.SetReadDeadline(time.Now().Add(15 * time.Second))
		var f liveFrame
		return c.ReadJSON(&f) == nil && f.Type == "state"
	})
}

// TestLiveFetchIsNotActivity: the list a page re-reads by itself (with
// portal.LiveHeader) does not restart the session's idle clock; the same
// request without it does.
func TestLiveFetchIsNotActivity(t *testing.T) {
	h := e2e.Start(t, nodeConfig(t.TempDir()))
	pass := h.AddStaff(staff)
	alice, _ := claimNew(t, h, pass, "alice@example.net", patientPW)
	tok := nodeCookie(t, alice)
	lastSeen := func() time.Time {
		rec, err := h.G.Sessions.Peek(context.Background(), tok)
		if err != nil {
			t.Fatal(err)
		}
		return rec.LastSeen
	}
	before := lastSeen()
	if st, _, b := alice.Do("GET", "/api/v1/messages", nil, map[string]string{portal.LiveHeader: "1"}); st != 200 {
		t.Fatalf("live list: %d %s", st, b)
	}
	if got := lastSeen(); !got.Equal(before) {
		t.Errorf("a live re-read moved the idle clock: %v -> %v", before, got)
	}
	alice.JSON("GET", "/api/v1/messages", nil, 200, nil)
	if got := lastSeen(); !got.After(before) {
		t.Errorf("an ordinary request left the idle clock at %v", got)
	}
}

// TestLiveWebsocketReadLimit: a page sends nothing but control frames; a
// data frame over the read limit (512 bytes) ends the connection with 1009.
func TestLiveWebsocketReadLimit(t *testing.T) {
	h := e2e.Start(t, nodeConfig(t.TempDir()))
	pass := h.AddStaff(staff)
	alice, _ := claimNew(t, h, pass, "alice@example.net", patientPW)
	ws := dialLive(t, h, "alice", nodeCookie(t, alice))
	if err := ws.conn.WriteMessage(websocket.TextMessage, bytes.Repeat([]byte("x"), 4096)); err != nil {
		t.Fatal(err)
	}
	for {
		ws.conn.SetReadDeadline(time.Now().Add(15 * time.Second))
		_, _, err := ws.conn.ReadMessage()
		if err == nil {
			continue // a state report written before the server read the frame
		}
		if !websocket.IsCloseError(err, websocket.CloseMessageTooBig) {
			t.Fatalf("after an oversized frame: %v, want close 1009", err)
		}
		break
	}
}

// TestLiveNeedsSecondFactor: a page whose session still waits for its
// second factor hears no message events: the sender's message event comes
// before the session's end (the factor done, a new session id) and yet is
// not among its frames.
func TestLiveNeedsSecondFactor(t *testing.T) {
	h := e2e.Start(t, nodeConfig(t.TempDir()))
	pass := h.AddStaff(staff)
	_, secret := signInStaff(t, h, staff, staffPortalPW, time.Now())
	pending := h.Client()
	var in struct{ Next string }
	pending.JSON("POST", "/api/v1/login", map[string]string{"email": staff, "password": staffPortalPW}, 200, &in)
	if in.Next != "2fa" {
		t.Fatalf("next=%q, want 2fa", in.Next)
	}
	ws := dialLive(t, h, "pending", nodeCookie(t, pending))
	sendLive(t, h, pass, "alice@example.net", "hello", "hello", "a.txt")
	pending.JSON("POST", "/api/v1/login/2fa", map[string]string{"code": e2e.TOTPCode(t, secret, time.Now().Add(30*time.Second))}, 200, nil)
	for {
		f := ws.read(t)
		if f.Type == "ended" {
			if f.Reason != "privilege" {
				t.Errorf("ended %q, want privilege", f.Reason)
			}
			return
		}
		if f.Type == "message" {
			t.Fatalf("a session waiting for its second factor heard %+v", f)
		}
	}
}
