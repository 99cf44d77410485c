// Package portal is the HTTPS side: server-rendered pages for recipients,
// and the same operations as a JSON API under /api/v1 (docs/api.md).
package portal

import (
	"context"
	"fmt"
	"html/template"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/phigate/phigate/alert"

	"github.com/phigate/phigate/audit"

	"github.com/phigate/phigate/config"
	pcrypto "github.com/phigate/phigate/crypto"
	"github.com/phigate/phigate/events"
	"github.com/phigate/phigate/identity"
	"github.com/phigate/phigate/intake"
	"github.com/phigate/phigate/limiter"
	"github.com/phigate/phigate/logx"
	"github.com/phigate/phigate/metrics"
	"github.com/phigate/phigate/notify"
	"github.com/phigate/phigate/policy"
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
	Limiter  *limiter.Limiter
	Bus      events.Bus
	Gateway  *pcrypto.Key // verifies stored messages' signatures
	Org      config.Org
	Log      *slog.Logger
	Now      func() time.Time

	Metrics        *metrics.M // may be nil
	Audit          audit.Recorder
	Trail          *audit.Trail   // review, export, verify
	Alerts         *alert.Alerter // the recent-alerts list
	PolicyVersions *policy.Versions
	Intake         *intake.Intake
	// Push is the Web Push channel (push.go); nil: not offered.
	Push *notify.Pusher
	// Compliance builds the compliance report (compliance.go); nil: the
	// pages answer with a fault.
	Compliance ComplianceFunc

	// Refusals records repeated sign-in refusals once per window
	// (signin.go); nil records each.
	Refusals *audit.Coalescer

	// RedisDown is nil without Redis; true while it is down (unavailable.go).
	RedisDown func() bool

	PublicURL         string
	RequirePatient2FA bool
	OfficerEmail      string // receives break-glass alerts
	Limits            Limits // request body bounds (body.go)

	tmpl   *template.Template
	routes []Route

	// Live is the websocket's bounds (ws.go); zero values take defaults.
	Live LiveLimits
	ws   wsConns

	// memo: inbox summaries whose signature was checked (summaries.go).
	memo     *pcrypto.VerifiedMemo
	memoOnce sync.Once
}

func (s *Server) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// Handler returns the portal's routes wrapped in the security middleware.
// Every route names the permission it needs (authz.go).
func (s *Server) Handler() http.Handler {
	s.tmpl = web.TemplatesIn(s.Org.Location()) // times in org.time_zone (issue 13.4)
	s.routes = nil
	mux := http.NewServeMux()
	// Every route's body is bounded and type-checked before it is read
	// (body.go); hb names the routes whose bound is not the small default.
	hb := func(pattern string, p Perm, body bodyClass, fn handler) {
		s.handle(mux, pattern, p, s.bounded(body, fn))
	}
	h := func(pattern string, p Perm, fn handler) { hb(pattern, p, smallBody, fn) }

	// Signing in and out, claiming, resetting.
	h("GET /{$}", PermPublic, s.home)
	h("GET /login", PermPublic, s.loginPage)
	h("POST /login", PermPublic, s.loginSubmit)
	h("GET /login/2fa", PermSession, s.secondFactorPage)
	h("POST /login/2fa", PermSession, s.secondFactorSubmit)
	h("GET /claim/{token}", PermPublic, s.claimPage)
	h("POST /claim/{token}", PermPublic, s.claimSubmit)
	h("GET /reset", PermPublic, s.resetRequestPage)
	h("POST /reset", PermPublic, s.resetRequestSubmit)
	h("GET /reset/{token}", PermPublic, s.resetPage)
	h("POST /reset/{token}", PermPublic, s.resetSubmit)
	h("POST /logout", PermSession, s.logoutSubmit)
	h("GET /ws", PermPublic, s.websocket)
	h("POST /session/keepalive", PermSession, s.keepalive)

	// The recipient's own messages and account.
	h("GET /inbox", PermOwn, s.inboxPage)
	h("GET /messages/{id}", PermOwn, s.messagePage)
	h("GET /messages/{id}/content", PermOwn, s.messageContent)
	h("GET /messages/{id}/attachments/{aid}", PermOwn, s.attachment)
	hb("POST /messages/{id}/reply", PermOwn, replyBody, s.replySubmit)
	h("POST /messages/{id}/passcode", PermOwn, s.passcodeSubmit)
	h("GET /account", PermOwn, s.accountPage)
	h("GET /account/2fa", PermSession, s.enrolPage)
	h("POST /account/2fa", PermSession, s.enrolSubmit)
	h("POST /account/recovery-codes", PermOwn, s.recoveryCodesSubmit)
	h("POST /account/signout-all", PermOwn, s.signoutAllSubmit)
	s.pushRoutes(h)  // service worker, manifest, push devices (issue 10.3)
	s.prefsRoutes(h) // email, push or both (issue 10.4)
	// Expired or used claim links: a new link (issue 13.1).
	s.newLinkRoutes(h)
	// Failed notices: list and retry (issue 10.6).
	s.noticeRoutes(h)

	// Administration.
	h("GET /admin/users", PermAdmin, s.adminUsersPage)
	h("POST /admin/users", PermAdmin, s.adminCreateSubmit)
	h("POST /admin/users/{id}/{action}", PermAdmin, s.adminActionSubmit)
	h("GET /admin/recover", PermAdmin, s.recoverPage)
	hb("POST /admin/recover", PermAdmin, escrowBody, s.recoverSubmit)
	h("GET /admin/policy", PermAdmin, s.policyPage)
	hb("POST /admin/policy", PermAdmin, uploadBody, s.policySubmit)
	h("GET /admin/keys", PermAdmin, s.keysPage)
	hb("POST /admin/keys", PermAdmin, uploadBody, s.keysSubmit)
	hb("POST /account/key", PermOwn, uploadBody, s.ownKeySubmit)
	h("GET /admin", PermReview, s.overviewPage) // issue 13.3
	h("GET /admin/quarantine", PermAdmin, s.quarantineList)
	h("GET /admin/quarantine/{id}", PermAdmin, s.quarantineReview)           // issue 13.2
	h("GET /admin/quarantine/{id}/{action}", PermAdmin, s.quarantineConfirm) // issue 13.2
	h("POST /admin/quarantine/{id}/{action}", PermAdmin, s.quarantineDecideSubmit)
	h("GET /admin/audit", PermReview, s.auditPage)
	h("POST /admin/audit", PermReview, s.auditSearchSubmit) // issue 13.4: addresses typed stay out of URLs
	h("GET /admin/audit/export", PermReview, s.auditExport)
	h("GET /admin/alerts", PermReview, s.alertsPage)
	h("GET /admin/compliance", PermReview, s.compliancePage)
	h("GET /messages/{id}/history", PermOwn, s.historyPage)
	h("GET /sent", PermOwn, s.sentPage)
	h("POST /sent", PermOwn, s.sentSearch)               // issue 13.3: the search text stays out of URLs
	h("GET /sent/{id}/recall", PermOwn, s.recallConfirm) // issue 13.3
	h("POST /sent/{id}/recall", PermOwn, s.recallSubmit)
	h("GET /admin/break-glass", PermBreakGlass, s.breakGlassPage)
	hb("POST /admin/break-glass", PermBreakGlass, escrowBody, s.breakGlassSubmit)

	// JSON API (docs/api.md).
	h("POST /api/v1/claim", PermPublic, s.apiClaim)
	h("POST /api/v1/login", PermPublic, s.apiLogin)
	h("POST /api/v1/login/2fa", PermSession, s.apiSecondFactor)
	h("POST /api/v1/logout", PermSession, s.apiLogout)
	h("POST /api/v1/reset", PermPublic, s.apiResetRequest)
	h("POST /api/v1/reset/complete", PermPublic, s.apiResetComplete)
	h("POST /api/v1/session/keepalive", PermSession, s.keepalive)
	h("GET /api/v1/messages", PermOwn, s.apiMessages)
	h("GET /api/v1/messages/{id}", PermOwn, s.apiMessage)
	h("GET /api/v1/messages/{id}/attachments/{aid}", PermOwn, s.attachment)
	hb("POST /api/v1/messages/{id}/reply", PermOwn, replyBody, s.apiReply)
	h("POST /api/v1/messages/{id}/passcode", PermOwn, s.apiPasscode)
	h("GET /api/v1/account", PermOwn, s.apiAccount)
	h("POST /api/v1/account/2fa/setup", PermSession, s.apiEnrolStart)
	h("POST /api/v1/account/2fa/confirm", PermSession, s.apiEnrolConfirm)
	h("POST /api/v1/account/recovery-codes", PermOwn, s.apiRecoveryCodes)
	h("POST /api/v1/account/signout-all", PermOwn, s.apiSignoutAll)
	h("GET /api/v1/admin/users", PermAdmin, s.apiAdminUsers)
	h("POST /api/v1/admin/users", PermAdmin, s.apiAdminCreate)
	h("POST /api/v1/admin/users/{id}/{action}", PermAdmin, s.apiAdminAction)
	hb("POST /api/v1/admin/recover", PermAdmin, uploadBody, s.apiRecover)
	hb("POST /api/v1/admin/break-glass", PermBreakGlass, uploadBody, s.apiBreakGlass)
	h("GET /api/v1/audit", PermReview, s.apiAudit)
	h("GET /api/v1/audit/export", PermReview, s.auditExport)
	h("POST /api/v1/audit/verify", PermReview, s.apiAuditVerify)
	h("GET /api/v1/alerts", PermReview, s.apiAlerts)
	h("GET /api/v1/admin/compliance", PermReview, s.apiCompliance)
	h("GET /api/v1/messages/{id}/history", PermOwn, s.apiMessageHistory)
	h("GET /api/v1/sent", PermOwn, s.apiSent)
	h("POST /api/v1/sent/{id}/recall", PermOwn, s.apiRecall)
	h("GET /api/v1/admin/policy", PermAdmin, s.apiPolicy)
	hb("PUT /api/v1/admin/policy", PermAdmin, uploadBody, s.apiPolicyApply)
	h("GET /api/v1/admin/policy/versions", PermAdmin, s.apiPolicyVersions)
	h("GET /api/v1/admin/policy/diff", PermAdmin, s.apiPolicyDiff)
	h("POST /api/v1/admin/policy/rollback", PermAdmin, s.apiPolicyRollback)
	hb("POST /api/v1/admin/policy/explain", PermAdmin, uploadBody, s.apiPolicyExplain)
	h("GET /api/v1/admin/quarantine", PermAdmin, s.apiQuarantine)
	h("POST /api/v1/admin/quarantine/{id}/{action}", PermAdmin, s.apiQuarantineDecide)
	hb("PUT /api/v1/admin/recipient-keys", PermAdmin, uploadBody, s.apiRecipientKey)
	hb("PUT /api/v1/account/key", PermOwn, uploadBody, s.apiOwnKey)

	patterns := make([]string, len(s.routes))
	for i, r := range s.routes {
		patterns[i] = r.Method + " " + r.Pattern
	}
	s.Metrics.AllowRoutes(patterns...)
	mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(web.Static())))
	s.routes = append(s.routes, Route{Method: "GET", Pattern: "/static/", Perm: PermPublic})

	// Cross-origin state-changing requests are refused (Sec-Fetch-Site /
	// Origin checks); SameSite=Strict cookies are the second layer.
	cop := http.NewCrossOriginProtection()
	return s.withRequestContext(securityHeaders(cop.Handler(s.whileStoreDown(mux))))
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
			"manifest-src 'self'; connect-src 'self'; frame-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
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

func (s *Server) setSessionCookie(w http.ResponseWriter, token string) {
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: token, Path: "/", Secure: true,
		HttpOnly: true, SameSite: http.SameSiteStrictMode})
}

func clearSessionCookie(w http.ResponseWriter) {
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: "", Path: "/", Secure: true,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, MaxAge: -1})
	// Ask the browser to drop what it showed (DESIGN.md invariant 6). Not
	// "storage": the portal keeps nothing in web storage, and "storage"
	// also unregisters the service worker (W3C Clear-Site-Data), which
	// ends the push subscription the account holder turned on for this
	// device (issue 10.3).
	w.Header().Set("Clear-Site-Data", `"cache"`)
}

// startSession signs u in with their unlocked key and sets the cookie; mfa
// says whether the second factor is already done.
func (s *Server) startSession(w http.ResponseWriter, r *http.Request, u *store.User, priv []byte, how string, mfa bool) error {
	token, err := s.newSession(r, u, priv, how, mfa)
	if err != nil {
		return err
	}
	s.setSessionCookie(w, token)
	return nil
}

// newSession signs u in and returns the session's cookie value, for an
// operation's result (ops.go): the faces set the cookie.
func (s *Server) newSession(r *http.Request, u *store.User, priv []byte, how string, mfa bool) (string, error) {
	token, rec, err := s.Sessions.Start(r.Context(), u.ID, u.Role, priv, mfa)
	if err != nil {
		return "", err
	}
	s.Log.InfoContext(r.Context(), "sign-in", "user", u.ID, "ip", info(r).ip, "how", how, "mfa", mfa, "session", rec.ID[:8])
	s.auditAs(r, u.ID, "auth.login", "session", rec.ID[:8], "ok", map[string]string{"how": how, "second_factor_pending": fmt.Sprint(!mfa)})
	return token, nil
}

// rotate gives the session a new id after the second factor (a privilege
// change), so an id seen before it is worthless.
func (s *Server) rotate(w http.ResponseWriter, r *http.Request, v *viewer) error {
	token, err := s.rotateToken(r, v)
	if err != nil {
		return err
	}
	s.setSessionCookie(w, token)
	return nil
}

// rotateToken is rotate for an operation: it returns the new cookie value.
func (s *Server) rotateToken(r *http.Request, v *viewer) (string, error) {
	token, _, err := s.Sessions.Rotate(r.Context(), v.token, v.user.Role, true)
	if err != nil {
		return "", err
	}
	v.token, v.mfaOK = token, true
	return token, nil
}
