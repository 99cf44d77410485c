package portal

import (
	"bufio"
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"time"

	pcrypto "github.com/phigate/phigate/crypto"
	"github.com/phigate/phigate/identity"
	"github.com/phigate/phigate/session"
	"github.com/phigate/phigate/store"
)

// Perm is what a route needs. Every route declares one; the zero value
// refuses everyone, so a route registered without a permission is closed
// (default deny, DESIGN.md invariant 2).
type Perm int

const (
	PermNone       Perm = iota // refuses every request
	PermPublic                 // no session needed
	PermSession                // signed in; the second factor may still be pending
	PermOwn                    // signed in with the second factor done: own messages and account
	PermAdmin                  // admins: accounts, recovery
	PermBreakGlass             // admins and security officers: emergency access
	PermReview                 // admins and security officers: audit trail and alerts
)

func (p Perm) String() string {
	return [...]string{"none", "public", "session", "own", "admin", "break-glass", "review"}[p]
}

// allows reports whether role may use a route needing p (the second factor
// is checked separately).
func allows(p Perm, role string) bool {
	switch p {
	case PermPublic, PermSession, PermOwn:
		return true
	case PermAdmin:
		return role == store.RoleAdmin
	case PermBreakGlass, PermReview:
		return role == store.RoleAdmin || role == store.RoleSecurity
	}
	return false
}

// Route is one entry of the route table (exported for the table-driven
// authorization test).
type Route struct {
	Method, Pattern string
	Perm            Perm
}

type handler func(http.ResponseWriter, *http.Request, *viewer)

// viewer is the signed-in user of one request, with their key unlocked for
// this request only. nil on public routes without a session.
type viewer struct {
	rec   *session.Record
	user  *store.User
	key   *pcrypto.Key
	token string
	mfaOK bool // second factor done, or not needed for this account
}

type viewerKey struct{}

// viewerOf returns the signed-in viewer of r (for page chrome), or nil.
func viewerOf(r *http.Request) *viewer {
	v, _ := r.Context().Value(viewerKey{}).(*viewer)
	return v
}

func isAPI(r *http.Request) bool { return strings.HasPrefix(r.URL.Path, "/api/") }

// LiveHeader marks a GET that a page makes by itself to update what it
// shows (web/static/live.js): it does not count as activity, so an open,
// unattended inbox still signs out after the idle timeout.
const LiveHeader = "X-Phigate-Live"

func passive(r *http.Request) bool {
	return r.Method == http.MethodGet && r.Header.Get(LiveHeader) == "1"
}

// handle registers a route with its permission.
func (s *Server) handle(mux *http.ServeMux, pattern string, p Perm, h handler) {
	method, path, _ := strings.Cut(pattern, " ")
	s.routes = append(s.routes, Route{Method: method, Pattern: path, Perm: p})
	mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		sw := &statusWriter{ResponseWriter: w}
		w = sw
		start := time.Now()
		defer func() { s.Metrics.HTTPDuration(pattern, sw.status, time.Since(start)) }()
		if p == PermNone {
			s.deny(w, r, http.StatusForbidden, "forbidden", "this address is not available")
			return
		}
		if p == PermPublic {
			h(w, r, nil)
			return
		}
		v, err := s.resume(r)
		if err != nil {
			s.unauthenticated(w, r, err)
			return
		}
		if !allows(p, v.user.Role) {
			s.Log.WarnContext(r.Context(), "access denied", "user", v.user.ID, "role", v.user.Role,
				"route", r.Pattern, "needs", p.String(), "ip", info(r).ip)
			s.deny(w, r, http.StatusForbidden, "forbidden", "your account does not have access to this")
			return
		}
		if p != PermSession && !v.mfaOK {
			s.needSecondFactor(w, r, v)
			return
		}
		h(w, r.WithContext(context.WithValue(r.Context(), viewerKey{}, v)), v)
	})
}

// Routes returns the route table.
func (s *Server) Routes() []Route { return append([]Route(nil), s.routes...) }

func (s *Server) deny(w http.ResponseWriter, r *http.Request, status int, code, msg string) {
	if isAPI(r) {
		writeJSONError(w, status, code, msg)
		return
	}
	d := s.data("Not available")
	d.Error = "You don't have access to this page."
	s.render(w, r, status, "error.html", d)
}

// unauthenticated answers a request without a usable session, saying why
// when the session ended (idle, replaced by a sign-in elsewhere, disabled).
func (s *Server) unauthenticated(w http.ResponseWriter, r *http.Request, err error) {
	if s.unavailableFor(w, r, err) {
		return // the session may well be fine: keep the cookie
	}
	if !errors.Is(err, session.ErrNoSession) && !errors.Is(err, store.ErrNotFound) && session.Reason(err) == "" {
		// A fault (the account database failed, say), not a missing or
		// ended session or account: signing the person out for it would be
		// wrong.
		if isAPI(r) {
			s.apiFail(w, r, err)
		} else {
			s.fail(w, r, err)
		}
		return
	}
	reason := session.Reason(err)
	if isAPI(r) {
		code, msg := "unauthenticated", "sign in first"
		if reason != "" {
			code, msg = "session_expired", "the session ended ("+reason+"); sign in again"
		}
		writeJSON(w, http.StatusUnauthorized, apiError{Error: code, Message: msg, Reason: reason})
		return
	}
	clearSessionCookie(w)
	target := "/login"
	if reason != "" {
		target += "?ended=" + reason
	}
	http.Redirect(w, r, target, http.StatusSeeOther)
}

func (s *Server) needSecondFactor(w http.ResponseWriter, r *http.Request, v *viewer) {
	enrolled := len(v.user.TOTPSecretEnc) > 0
	if isAPI(r) {
		code := "mfa_required"
		if !enrolled {
			code = "mfa_enrolment_required"
		}
		writeJSONError(w, http.StatusForbidden, code, "complete the second sign-in step first")
		return
	}
	if enrolled {
		http.Redirect(w, r, "/login/2fa", http.StatusSeeOther)
	} else {
		http.Redirect(w, r, "/account/2fa", http.StatusSeeOther)
	}
}

// resume returns the request's session, checking that the account is still
// active (a disabled account's sessions end at its next request on any
// node, whichever process disabled it).
func (s *Server) resume(r *http.Request) (*viewer, error) {
	c, err := r.Cookie(CookieName)
	if err != nil {
		return nil, session.ErrNoSession
	}
	resume := s.Sessions.Resume
	if passive(r) {
		resume = s.Sessions.Look
	}
	rec, priv, err := resume(r.Context(), c.Value)
	if err != nil {
		return nil, err
	}
	u, err := s.Store.UserByID(r.Context(), rec.UserID)
	if err != nil {
		return nil, err
	}
	if u.Status != store.StatusActive {
		_ = s.Sessions.End(r.Context(), c.Value, "disabled")
		return nil, &session.EndedError{Reason: "disabled"}
	}
	if u.Role != rec.Role {
		// A role change ends the old rights with the old session id.
		_ = s.Sessions.End(r.Context(), c.Value, "privilege")
		return nil, &session.EndedError{Reason: "privilege"}
	}
	k, err := pcrypto.ReadKey(priv)
	if err != nil {
		return nil, err
	}
	mfaOK := rec.MFA || !identity.NeedsMFA(u, s.RequirePatient2FA)
	return &viewer{rec: rec, user: u, key: k, token: c.Value, mfaOK: mfaOK}, nil
}

// endUser ends every session of a user (disable, role change, reset, sign
// out everywhere); open pages are told over the websocket.
func (s *Server) endUser(ctx context.Context, userID, reason string) {
	if err := s.Sessions.EndUser(ctx, userID, reason); err != nil && !errors.Is(err, session.ErrNoSession) {
		s.Log.ErrorContext(ctx, "end sessions", "user", userID, "err", err)
	}
}

// statusWriter remembers the status for metrics; it passes Hijack through
// for the websocket upgrade.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *statusWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	h, ok := w.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, errors.New("hijacking not supported")
	}
	w.status = http.StatusSwitchingProtocols
	return h.Hijack()
}
