// Package portal is the HTTPS side: server-rendered pages for recipients,
// and the same operations as a JSON API under /api/v1 (docs/api.md).
package portal

import (
	"context"
	"errors"
	"html/template"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/phigate/phigate/config"
	pcrypto "github.com/phigate/phigate/crypto"
	"github.com/phigate/phigate/identity"
	"github.com/phigate/phigate/logx"
	"github.com/phigate/phigate/session"
	"github.com/phigate/phigate/store"
	"github.com/phigate/phigate/web"
)

// CookieName uses the __Host- prefix: Secure, Path=/, no Domain, so no
// sibling host can set or read it.
const CookieName = "__Host-phigate"

type Server struct {
	Store    store.Store
	Identity *identity.Service
	Sessions *session.Manager
	Gateway  *pcrypto.Key // verifies stored messages' signatures
	Org      config.Org
	Log      *slog.Logger
	Now      func() time.Time

	tmpl *template.Template
}

func (s *Server) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// Handler returns the portal's routes wrapped in the security middleware.
func (s *Server) Handler() http.Handler {
	s.tmpl = web.Templates()
	mux := http.NewServeMux()
	// Pages.
	mux.HandleFunc("GET /{$}", s.home)
	mux.HandleFunc("GET /login", s.loginPage)
	mux.HandleFunc("POST /login", s.loginSubmit)
	mux.HandleFunc("GET /claim/{token}", s.claimPage)
	mux.HandleFunc("POST /claim/{token}", s.claimSubmit)
	mux.HandleFunc("POST /logout", s.logoutSubmit)
	mux.HandleFunc("GET /inbox", s.page(s.inboxPage))
	mux.HandleFunc("GET /messages/{id}", s.page(s.messagePage))
	mux.HandleFunc("GET /messages/{id}/content", s.page(s.messageContent))
	mux.HandleFunc("GET /messages/{id}/attachments/{aid}", s.page(s.attachment))
	mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(web.Static())))
	// JSON API.
	mux.HandleFunc("POST /api/v1/claim", s.apiClaim)
	mux.HandleFunc("POST /api/v1/login", s.apiLogin)
	mux.HandleFunc("POST /api/v1/logout", s.apiLogout)
	mux.HandleFunc("GET /api/v1/messages", s.api(s.apiMessages))
	mux.HandleFunc("GET /api/v1/messages/{id}", s.api(s.apiMessage))
	mux.HandleFunc("GET /api/v1/messages/{id}/attachments/{aid}", s.api(s.attachment))

	// Cross-origin state-changing requests are refused (Sec-Fetch-Site /
	// Origin checks); SameSite=Strict cookies are the second layer.
	cop := http.NewCrossOriginProtection()
	return s.withRequestContext(securityHeaders(cop.Handler(mux)))
}

// securityHeaders applies the defaults every response carries; the message
// content frame tightens its CSP further.
func securityHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Strict-Transport-Security", "max-age=31536000")
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("Referrer-Policy", "no-referrer")
		hd.Set("X-Frame-Options", "DENY")
		hd.Set("Cross-Origin-Opener-Policy", "same-origin")
		hd.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self' data:; script-src 'self'; "+
			"connect-src 'self'; frame-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
		// Pages show PHI: never keep them in any cache.
		hd.Set("Cache-Control", "no-store")
		h.ServeHTTP(w, r)
	})
}

type reqInfo struct {
	cid string
	ip  string
}

type reqKey struct{}

func (s *Server) withRequestContext(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ri := reqInfo{cid: logx.NewCorrelationID(), ip: clientIP(r)}
		ctx := logx.WithCorrelation(r.Context(), ri.cid)
		ctx = context.WithValue(ctx, reqKey{}, ri)
		w.Header().Set("X-Request-Id", ri.cid)
		h.ServeHTTP(w, r.WithContext(ctx))
	})
}

func info(r *http.Request) reqInfo {
	ri, _ := r.Context().Value(reqKey{}).(reqInfo)
	return ri
}

func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// viewer is the signed-in user of one request, with their key unlocked for
// this request only.
type viewer struct {
	rec *session.Record
	key *pcrypto.Key
}

// resume returns the request's session, or an error saying why there is none.
func (s *Server) resume(r *http.Request) (*viewer, error) {
	c, err := r.Cookie(CookieName)
	if err != nil {
		return nil, session.ErrNoSession
	}
	rec, priv, err := s.Sessions.Resume(r.Context(), c.Value)
	if err != nil {
		if errors.Is(err, session.ErrExpired) {
			s.Log.InfoContext(r.Context(), "logoff", "reason", "idle", "ip", info(r).ip)
		}
		return nil, err
	}
	k, err := pcrypto.ReadKey(priv)
	if err != nil {
		return nil, err
	}
	return &viewer{rec: rec, key: k}, nil
}

func (s *Server) setSessionCookie(w http.ResponseWriter, token string) {
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: token, Path: "/", Secure: true,
		HttpOnly: true, SameSite: http.SameSiteStrictMode})
}

func clearSessionCookie(w http.ResponseWriter) {
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: "", Path: "/", Secure: true,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, MaxAge: -1})
	// Ask the browser to drop what it showed (DESIGN.md invariant 6).
	w.Header().Set("Clear-Site-Data", `"cache", "storage"`)
}

// startSession signs u in with their unlocked key and sets the cookie.
func (s *Server) startSession(w http.ResponseWriter, r *http.Request, u *store.User, priv []byte, how string) error {
	token, rec, err := s.Sessions.Start(r.Context(), u.ID, u.Role, priv)
	if err != nil {
		return err
	}
	s.setSessionCookie(w, token)
	s.Log.InfoContext(r.Context(), "sign-in", "user", u.ID, "ip", info(r).ip, "how", how, "session", rec.ID[:8])
	return nil
}
