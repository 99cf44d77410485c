package portal

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"time"

	"github.com/gorilla/websocket"
	"github.com/phigate/phigate/events"
	"github.com/phigate/phigate/session"
	"github.com/phigate/phigate/store"
)

const (
	wsWriteWait  = 10 * time.Second
	wsPongWait   = 60 * time.Second
	wsPingEvery  = 25 * time.Second
	wsStateEvery = 5 * time.Second
)

// wsMsg is what open pages hear: the time left before the idle logoff, and
// that the session ended (with the reason). Never any message content.
type wsMsg struct {
	Type      string `json:"type"` // "state" or "ended"
	ExpiresIn int    `json:"expires_in,omitempty"`
	Reason    string `json:"reason,omitempty"`
}

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
	up := websocket.Upgrader{ReadBufferSize: 256, WriteBufferSize: 1024, CheckOrigin: s.sameOrigin}
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
	if storeUnavailable(err) {
		tryLater(conn)
		return
	}
	if err != nil {
		reason := session.Reason(err)
		if reason == "" {
			reason = "user"
		}
		conn.SetWriteDeadline(time.Now().Add(wsWriteWait))
		conn.WriteJSON(wsMsg{Type: "ended", Reason: reason})
		return
	}
	v := &watch{id: rec.ID, token: token}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	evs, unsubscribe := s.Bus.Subscribe(ctx)
	defer unsubscribe()

	// The only reader: pongs and close frames. Anything else ends the
	// connection (pages never send data).
	conn.SetReadLimit(512)
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
	send := func(m wsMsg) bool {
		conn.SetWriteDeadline(time.Now().Add(wsWriteWait))
		return conn.WriteJSON(m) == nil
	}
	ended := func(reason string) {
		send(wsMsg{Type: "ended", Reason: reason})
		conn.SetWriteDeadline(time.Now().Add(wsWriteWait))
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
			conn.SetWriteDeadline(time.Now().Add(wsWriteWait))
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
			goto wait
		}
	}
}

// reasonUnavailable is sessionState's answer while the session store does
// not answer: the session is not known to have ended, so the page must not
// be wiped.
const reasonUnavailable = "unavailable"

// tryLater closes a page's websocket without ending its session (1013 Try
// Again Later): the page reconnects by itself, with back-off, and hears its
// session's state once the store answers again.
func tryLater(conn *websocket.Conn) {
	conn.SetWriteDeadline(time.Now().Add(wsWriteWait))
	conn.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseTryAgainLater, "unavailable"))
}

// sessionState reads the session without touching it (watching must not
// keep a session alive) and returns the time left, or why it ended.
// watch is the session one websocket reports on.
type watch struct{ id, token string }

func (s *Server) sessionState(ctx context.Context, v *watch) (time.Duration, string) {
	rec, err := s.Sessions.Store.Get(ctx, v.id)
	if storeUnavailable(err) {
		return 0, reasonUnavailable
	}
	if err != nil {
		var ee *session.EndedError
		if errors.As(err, &ee) {
			return 0, ee.Reason
		}
		return 0, "user"
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
