package portal

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/phigate/phigate/events"
	"github.com/phigate/phigate/identity"
	"github.com/phigate/phigate/session"
	"github.com/phigate/phigate/store"
)

const (
	wsPongWait   = 60 * time.Second
	wsPingEvery  = 25 * time.Second
	wsStateEvery = 5 * time.Second
	// wsReadLimit bounds a frame from a page: pages send nothing but
	// pongs and close frames.
	wsReadLimit = 512
)

// LiveLimits bound the websocket (DESIGN.md invariant 7).
type LiveLimits struct {
	// PerUser caps one account's open websockets on one node (tabs,
	// devices); one more is refused with 1008 (policy violation).
	// DefaultWSPerUser if 0.
	PerUser int
	// WriteWait bounds each write: a page that does not take a frame in
	// time is dropped (it reconnects and re-reads). DefaultWSWriteWait
	// if 0.
	WriteWait time.Duration
}

const (
	DefaultWSPerUser   = 8
	DefaultWSWriteWait = 10 * time.Second
)

func (l LiveLimits) perUser() int {
	if l.PerUser > 0 {
		return l.PerUser
	}
	return DefaultWSPerUser
}

func (l LiveLimits) writeWait() time.Duration {
	if l.WriteWait > 0 {
		return l.WriteWait
	}
	return DefaultWSWriteWait
}

// wsConns counts open websockets per account on this node.
type wsConns struct {
	mu sync.Mutex
	n  map[string]int
}

// acquire counts one more websocket for user, or returns false at max.
func (c *wsConns) acquire(user string, max int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n[user] >= max {
		return false
	}
	if c.n == nil {
		c.n = map[string]int{}
	}
	c.n[user]++
	return true
}

func (c *wsConns) release(user string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n[user]--; c.n[user] <= 0 {
		delete(c.n, user)
	}
}

// wsMsg is what open pages hear: the time left before the idle logoff,
// that the session ended (with the reason), and that a message of theirs
// changed (issue 10.1). Never any message content: a "message" frame
// carries the kind of change and the message's opaque id, and the page
// reads what it shows through the authenticated API.
type wsMsg struct {
	Type      string `json:"type"` // "state", "ended" or "message"
	ExpiresIn int    `json:"expires_in,omitempty"`
	Reason    string `json:"reason,omitempty"`
	Event     string `json:"event,omitempty"`      // message: an events kind (new-message, message-read, ...)
	MessageID string `json:"message_id,omitempty"` // message: the message's id
	Box       string `json:"box,omitempty"`        // message: "inbox" (received) or "sent"
}

// wsBufs is shared by every websocket: an idle connection holds no write
// buffer (memory per connection, docs/perf.md).
var wsBufs sync.Pool

// sameOrigin checks the Origin of a websocket upgrade. The upgrade is a GET,
// so CrossOriginProtection does not cover it (LIBRARY-NOTES).
func (s *Server) sameOrigin(r *http.Request) bool {
	o, err := url.Parse(r.Header.Get("Origin"))
	if err != nil || o.Scheme != "https" {
		return false
	}
	if o.Host == r.Host {
		return true
	}
	pub, err := url.Parse(s.PublicURL)
	return err == nil && o.Host == pub.Host
}

// websocket tells every open page of a session when it will be signed out
// for inactivity and, at once, when the session ends for any reason (idle,
// sign-in elsewhere, disabled, signed out in another tab), so the page can
// wipe what it shows even if its own timers were throttled.
//
// The route is public on purpose: it must not touch the session (watching
// a page must not keep it signed in), and a page whose session already
// ended must still hear why. It checks the cookie itself, read-only.
func (s *Server) websocket(w http.ResponseWriter, r *http.Request, _ *viewer) {
	up := websocket.Upgrader{ReadBufferSize: 256, WriteBufferSize: 1024, WriteBufferPool: &wsBufs, CheckOrigin: s.sameOrigin}
	conn, err := up.Upgrade(w, r, nil)
	if err != nil {
		s.Log.WarnContext(r.Context(), "websocket refused", "ip", info(r).ip, "err", err)
		return
	}
	defer conn.Close()
	s.Metrics.WebsocketConnected(1)
	defer s.Metrics.WebsocketConnected(-1)
	var token string
	if c, err := r.Cookie(CookieName); err == nil {
		token = c.Value
	}
	rec, err := s.Sessions.Peek(r.Context(), token)
	if err != nil {
		reason := endedReason(err)
		if reason == "" {
			// Debug: in an outage every open page lands here; the
			// Redis guard logs the outage once.
			if !storeUnavailable(err) {
				s.Log.DebugContext(r.Context(), "websocket: session not read", "err", err)
			}
			tryLater(conn)
			return
		}
		conn.SetWriteDeadline(time.Now().Add(s.Live.writeWait()))
		conn.WriteJSON(wsMsg{Type: "ended", Reason: reason})
		return
	}
	if !s.ws.acquire(rec.UserID, s.Live.perUser()) {
		s.Log.WarnContext(r.Context(), "websocket refused: too many for one account", "user", rec.UserID, "ip", info(r).ip)
		conn.SetWriteDeadline(time.Now().Add(s.Live.writeWait()))
		conn.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.ClosePolicyViolation, "too many"))
		return
	}
	defer s.ws.release(rec.UserID)
	v := &watch{id: rec.ID, user: rec.UserID, token: token, full: s.fullSession(r.Context(), rec)}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// Only this account's events reach this connection (events.Bus).
	evs, unsubscribe := s.Bus.SubscribeUser(ctx, rec.UserID)
	defer unsubscribe()

	// The only reader: pongs and close frames. Anything else ends the
	// connection (pages never send data).
	conn.SetReadLimit(wsReadLimit)
	conn.SetReadDeadline(time.Now().Add(wsPongWait))
	conn.SetPongHandler(func(string) error { return conn.SetReadDeadline(time.Now().Add(wsPongWait)) })
	go func() {
		defer cancel()
		for {
			if _, _, err := conn.ReadMessage(); err != nil {
				return
			}
		}
	}()

	// This goroutine is the only writer.
	wait := s.Live.writeWait()
	send := func(m wsMsg) bool {
		conn.SetWriteDeadline(time.Now().Add(wait))
		return conn.WriteJSON(m) == nil
	}
	ended := func(reason string) {
		send(wsMsg{Type: "ended", Reason: reason})
		conn.SetWriteDeadline(time.Now().Add(wait))
		conn.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, reason))
	}
	ping := time.NewTicker(wsPingEvery)
	defer ping.Stop()
	state := time.NewTicker(wsStateEvery)
	defer state.Stop()
	for {
		left, reason := s.sessionState(ctx, v)
		if reason == reasonUnavailable {
			tryLater(conn)
			return
		}
		if reason != "" {
			ended(reason)
			return
		}
		if !send(wsMsg{Type: "state", ExpiresIn: int(left / time.Second)}) {
			return
		}
	wait:
		select {
		case <-ctx.Done():
			return
		case <-state.C:
		case <-ping.C:
			conn.SetWriteDeadline(time.Now().Add(wait))
			if conn.WriteMessage(websocket.PingMessage, nil) != nil {
				return
			}
			goto wait
		case e, ok := <-evs:
			if !ok {
				return
			}
			if e.Kind == events.SessionEnded && e.SessionID == v.id {
				ended(e.Reason)
				return
			}
			for _, m := range s.messageFrames(ctx, v, e) {
				if !send(m) {
					return // a slow or gone page: dropped
				}
			}
			goto wait
		}
	}
}

// reasonUnavailable is sessionState's answer while the session store does
// not answer, or fails: the session is not known to have ended, so the
// page must not be wiped.
const reasonUnavailable = "unavailable"

// endedReason says why err means that the session is over: its end
// reason, or "user" for no such session. "" for a fault (Redis down or
// overloaded, say): the session is not known to have ended, and the page
// must not be wiped for it; it is told to try again later.
func endedReason(err error) string {
	if reason := session.Reason(err); reason != "" {
		return reason
	}
	if errors.Is(err, session.ErrNoSession) {
		return "user"
	}
	return ""
}

// tryLater closes a page's websocket without ending its session (1013 Try
// Again Later): the page reconnects by itself, with back-off, and hears its
// session's state once the store answers again.
func tryLater(conn *websocket.Conn) {
	conn.SetWriteDeadline(time.Now().Add(DefaultWSWriteWait))
	conn.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseTryAgainLater, "unavailable"))
}

// sessionState reads the session without touching it (watching must not
// keep a session alive) and returns the time left, or why it ended.
// watch is the session one websocket reports on.
type watch struct {
	id, user, token string
	full            bool // may read messages: only then does it hear message events
}

// fullSession reports whether rec may read messages: second factor done,
// or not needed for the account. A session waiting for its second factor
// hears no message events (it gets a new id, and its page a new
// websocket, once the factor is done).
func (s *Server) fullSession(ctx context.Context, rec *session.Record) bool {
	if rec.MFA {
		return true
	}
	u, err := s.Store.UserByID(ctx, rec.UserID)
	return err == nil && !identity.NeedsMFA(u, s.RequirePatient2FA)
}

func (s *Server) sessionState(ctx context.Context, v *watch) (time.Duration, string) {
	rec, err := s.Sessions.Store.Get(ctx, v.id)
	if err != nil {
		if reason := endedReason(err); reason != "" {
			return 0, reason
		}
		if !storeUnavailable(err) {
			s.Log.DebugContext(ctx, "websocket: session not read", "err", err)
		}
		return 0, reasonUnavailable
	}
	// An account disabled elsewhere (another node, the CLI) ends here too.
	if u, err := s.Store.UserByID(ctx, rec.UserID); err == nil && u.Status != store.StatusActive {
		_ = s.Sessions.End(ctx, v.token, "disabled")
		return 0, "disabled"
	}
	now := s.now()
	left := s.Sessions.Idle - now.Sub(rec.LastSeen)
	if abs := s.Sessions.Absolute - now.Sub(rec.Created); s.Sessions.Absolute > 0 && abs < left {
		left = abs
	}
	if left <= 0 {
		reason := "idle"
		if s.Sessions.Absolute > 0 && now.Sub(rec.Created) >= s.Sessions.Absolute {
			reason = "absolute"
		}
		_ = s.Sessions.End(ctx, v.token, reason)
		return 0, reason
	}
	return left, ""
}

// messageKinds are the events that become "message" frames.
var messageKinds = map[string]bool{events.NewMessage: true, events.MessageHeld: true, events.MessageDenied: true,
	events.MessageRead: true, events.MessageRecalled: true, events.MessagePurged: true}

// messageFrames turns a message event into the frames for a page of
// v's account (none before its second factor): "inbox" if the account
// received the message, "sent" if it sent it.
// The event only says whom it is for; the database decides (DESIGN.md
// invariant 2): a frame is written only for a message whose row names
// user as its recipient (and shows it to them) or its sender. A forged or
// misrouted event therefore reaches nobody.
func (s *Server) messageFrames(ctx context.Context, v *watch, e events.Event) []wsMsg {
	user := v.user
	if !v.full || !messageKinds[e.Kind] || e.MessageID == "" || (e.UserID != user && e.SenderID != user) {
		return nil
	}
	m, err := s.Store.MessageMeta(ctx, e.MessageID)
	if err != nil {
		if !errors.Is(err, store.ErrNotFound) {
			s.Log.WarnContext(ctx, "live event: message not read", "message", e.MessageID, "err", err)
		}
		return nil
	}
	var out []wsMsg
	if e.UserID == user && m.RecipientID == user && m.State != store.StateQuarantined && m.State != store.StateDenied {
		out = append(out, wsMsg{Type: "message", Event: e.Kind, MessageID: m.ID, Box: "inbox"})
	}
	if e.SenderID == user && m.SenderID == user {
		out = append(out, wsMsg{Type: "message", Event: e.Kind, MessageID: m.ID, Box: "sent"})
	}
	return out
}

// publishChange tells the open pages of m's recipient and sender that m
// changed (kind); called after the change committed. Best effort: a page
// that misses it shows the change at its next load.
func (s *Server) publishChange(ctx context.Context, kind string, m *store.Message) {
	if s.Bus == nil {
		return
	}
	e := events.MessageChanged(kind, m.ID, m.RecipientID, m.SenderID)
	if err := s.Bus.Publish(context.WithoutCancel(ctx), e); err != nil {
		s.Log.WarnContext(ctx, "live event not published", "kind", kind, "message", m.ID, "err", err)
	}
}
