package portal

import (
	"errors"
	"html/template"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/phigate/phigate/compliance"
	"github.com/phigate/phigate/events"
	"github.com/phigate/phigate/identity"
	"github.com/phigate/phigate/message"
	"github.com/phigate/phigate/notify"
	"github.com/phigate/phigate/web"
)

// pageData is what every template sees.
type pageData struct {
	Title, Org, Contact string
	SignedIn            bool
	Error, Notice       string
	// A refused form (ops.go): what the person sent, to fill the form
	// again, and the field (and line of it) the refusal is about.
	Form  url.Values
	Field string
	Line  int

	Email      string
	Locked     int // messages waiting for escrow-assisted recovery
	Idle       int // session idle timeout in seconds, for the auto-logoff script
	Next       string
	Enrol      *identity.Enrolment
	QR         template.URL
	Codes      []string
	Users      []adminUser
	Recovered  int
	BreakGlass bool
	Enrolled   bool
	CodesLeft  int
	Current    string // the factor a change asks for again (reauthKind, issue 8.9), "" if none
	Reason     string
	Roles      []string
	Policy     *policyPage
	Review     *reviewPage
	Sent       []sentItem
	Replies    []replyView
	NoDownload bool
	CanReply   bool
	Role       string
	FullAccess bool // second factor done: show the full navigation
	Token      string
	Invalid    bool
	MinLength  int
	Messages   []listItem
	ID         string
	M          *message.View
	Signature  string
	HasHTML    bool
	ExpiresAt  time.Time
	SentBy     string // the account that submitted the message over SMTP
	// BlockedImages counts the HTML body's pictures not shown; Inline
	// names the attachments a browser may open itself (attachment.go).
	BlockedImages int
	Inline        map[string]bool

	// Push is the account page's notifications section (push.go).
	Push *pushView
	// Notices are the failed notices an admin sees (notices.go).
	Notices []failedNotice
	// Prefs is the account's choice of notice channels (prefs.go).
	Prefs *notify.PrefsView
	// LinkState is a claim link's state (newlink.go); NoticeRefs the
	// references of the notices the account was sent (noticeref.go).
	LinkState  string
	NoticeRefs []noticeRefView
	// Zone names the time zone pages show times in (org.time_zone).
	Zone string
	// Overview is the admin's landing page (overview.go, issue 13.3).
	Overview *overview
	// Held is one held message's review page (quarantine.go, issue 13.2).
	Held *heldView
	// Query is the Sent page's search, SentTotal the count before it
	// (issue 13.3).
	Query     string
	SentTotal int
	// Compliance is the compliance report page's report (compliance.go).
	Compliance *compliance.Report
}

func (s *Server) data(title string) pageData {
	return pageData{Title: title, Org: s.Org.Name, Contact: s.Org.Contact, MinLength: identity.MinPasswordLength, Zone: s.zoneName()}
}

func (s *Server) render(w http.ResponseWriter, r *http.Request, status int, name string, d pageData) {
	if v := viewerOf(r); v != nil {
		d.SignedIn, d.Role, d.FullAccess = true, v.user.Role, v.mfaOK
	}
	if d.SignedIn {
		d.Idle = int(s.Sessions.Idle / time.Second)
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	if err := s.tmpl.ExecuteTemplate(w, name, d); err != nil {
		s.Log.ErrorContext(r.Context(), "render", "template", name, "err", err)
	}
}

// fail shows a generic error page with the request id: never the cause.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	if s.unavailableFor(w, r, err) || s.busyFor(w, r, err) {
		return
	}
	// The route pattern, not the path: a path can hold a claim token.
	s.Log.ErrorContext(r.Context(), "request failed", "route", r.Pattern, "err", err)
	d := s.data("Something went wrong")
	d.Error = "We could not complete this request. Please try again; if it keeps happening, contact " +
		s.Org.Contact + " and mention reference " + info(r).cid + "."
	s.render(w, r, http.StatusInternalServerError, "error.html", d)
}

func (s *Server) home(w http.ResponseWriter, r *http.Request, _ *viewer) {
	target := "/inbox"
	if v, err := s.resume(r); err == nil && v.mfaOK {
		target = landing(v.user.Role) // staff: Sent; admins: the overview (issue 13.3)
	}
	http.Redirect(w, r, target, http.StatusSeeOther)
}

// endedNotices explains to a person why they are on the sign-in page.
var endedNotices = map[string]string{
	"idle":       "You were signed out after a period of inactivity, to protect your information.",
	"absolute":   "You were signed out because you had been signed in for a long time. Please sign in again.",
	"replaced":   "You were signed out because your account signed in somewhere else.",
	"user":       "You have signed out.",
	"logout":     "You have signed out.",
	"everywhere": "You were signed out on all your devices.",
	"disabled":   "Your account has been disabled. Contact your organisation if you think this is a mistake.",
	"privilege":  "Your access changed. Please sign in again.",
	"reset":      "Your password was changed. Sign in with your new password.",
}

func (s *Server) loginPage(w http.ResponseWriter, r *http.Request, _ *viewer) {
	d := s.data("Sign in")
	d.Notice = endedNotices[r.URL.Query().Get("ended")]
	s.render(w, r, http.StatusOK, "login.html", d)
}

func (s *Server) loginSubmit(w http.ResponseWriter, r *http.Request, v *viewer) {
	out, err := s.opSignIn(r, v, signInIn{Email: r.PostFormValue("email"), Password: r.PostFormValue("password")})
	if err != nil {
		forgetDeviceOnFailure(w, r, err)
		d := s.data("Sign in")
		d.Email = strings.TrimSpace(r.PostFormValue("email"))
		s.pageRefused(w, r, err, d, func(status int, d pageData) { s.render(w, r, status, "login.html", d) })
		return
	}
	s.setSessionCookie(w, out.token)
	setDeviceCookie(w, out.device)
	switch out.Next {
	case "":
		http.Redirect(w, r, landing(out.User.Role), http.StatusSeeOther)
	case "2fa":
		http.Redirect(w, r, "/login/2fa", http.StatusSeeOther)
	default:
		http.Redirect(w, r, "/account/2fa", http.StatusSeeOther)
	}
}

func (s *Server) secondFactorPage(w http.ResponseWriter, r *http.Request, v *viewer) {
	if v.mfaOK {
		http.Redirect(w, r, landing(v.user.Role), http.StatusSeeOther)
		return
	}
	if len(v.user.TOTPSecretEnc) == 0 {
		http.Redirect(w, r, "/account/2fa", http.StatusSeeOther)
		return
	}
	d := s.data("Enter your code")
	d.SignedIn = true
	s.render(w, r, http.StatusOK, "twofactor.html", d)
}

func (s *Server) secondFactorSubmit(w http.ResponseWriter, r *http.Request, v *viewer) {
	out, err := s.opSecondFactor(r, v, codeIn{Code: r.PostFormValue("code")})
	if err != nil {
		forgetDeviceOnFailure(w, r, err)
		d := s.data("Enter your code")
		d.SignedIn = true
		s.pageRefused(w, r, err, d, func(status int, d pageData) { s.render(w, r, status, "twofactor.html", d) })
		return
	}
	if out.token != "" {
		s.setSessionCookie(w, out.token)
	}
	setDeviceCookie(w, out.device)
	http.Redirect(w, r, landing(v.user.Role), http.StatusSeeOther)
}

func (s *Server) claimPage(w http.ResponseWriter, r *http.Request, v *viewer) {
	token := r.PathValue("token")
	st, err := s.opClaimLinkStatus(r, v, claimLinkIn{Token: token})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if st.State != linkReady {
		s.renderClaimLink(w, r, token, st) // newlink.go (issue 13.1)
		return
	}
	d := s.data("Choose a password")
	d.Token = token
	s.render(w, r, http.StatusOK, "claim.html", d)
}

func (s *Server) claimSubmit(w http.ResponseWriter, r *http.Request, v *viewer) {
	confirm := r.PostFormValue("confirm")
	in := newPasswordIn{Token: r.PathValue("token"), Password: r.PostFormValue("password"), confirm: &confirm}
	out, err := s.opClaim(r, v, in)
	if st, ok := claimLinkOf(err); ok {
		s.renderClaimLink(w, r, in.Token, st) // newlink.go (issue 13.1)
		return
	}
	if err != nil {
		d := s.data("Choose a password")
		d.Token = in.Token
		s.pageRefused(w, r, err, d, func(status int, d pageData) { s.render(w, r, status, "claim.html", d) })
		return
	}
	s.setSessionCookie(w, out.token)
	// Straight to the message, not a dashboard (DESIGN.md, the portal as a
	// patient meets it), after the second factor if the clinic requires it.
	target := "/inbox"
	if out.only != "" {
		target = "/messages/" + out.only
	}
	if out.Next != "" {
		target = "/account/2fa?next=" + url.QueryEscape(target)
	}
	http.Redirect(w, r, target, http.StatusSeeOther)
}

func (s *Server) resetRequestPage(w http.ResponseWriter, r *http.Request, _ *viewer) {
	d := s.data("Reset your password")
	d.Notice = doneNotice(r, map[string]string{"sent": resetSent})
	s.render(w, r, http.StatusOK, "reset_request.html", d)
}

// resetSent is the same answer whether or not the address has an account.
const resetSent = "If an account exists for that address, we have emailed it a link to choose a new password. The link works for a short time only."

func (s *Server) resetRequestSubmit(w http.ResponseWriter, r *http.Request, v *viewer) {
	if _, err := s.opResetRequest(r, v, resetRequestIn{Email: r.PostFormValue("email")}); err != nil {
		s.pageRefused(w, r, err, s.data("Reset your password"), func(status int, d pageData) { s.render(w, r, status, "reset_request.html", d) })
		return
	}
	seeOther(w, r, "/reset", "sent")
}

func (s *Server) requestReset(r *http.Request, email string) error {
	// Rate-limited per IP (a few requests per lock-out period, counted
	// like failures), so the form cannot flood someone's mailbox; the
	// answer is the same either way.
	bucket := "reset:" + ipKey(info(r).ip)
	if err := s.Limiter.Check(r.Context(), bucket, ipKey(info(r).ip)); storeUnavailable(err) {
		return err // not a throttle: say so rather than claim a mail went out
	} else if err != nil {
		s.Log.WarnContext(r.Context(), "password reset throttled", "ip", info(r).ip)
		return nil
	}
	_, _, _ = s.Limiter.Failure(r.Context(), bucket, ipKey(info(r).ip))
	s.Log.InfoContext(r.Context(), "password reset requested", "ip", info(r).ip)
	s.audit(r, "account.reset.request", "user", "", "ok", map[string]string{"email": email})
	return s.Identity.RequestReset(r.Context(), email)
}

func (s *Server) resetPage(w http.ResponseWriter, r *http.Request, _ *viewer) {
	d := s.data("Choose a new password")
	if _, err := s.Identity.CheckResetToken(r.Context(), r.PathValue("token")); err != nil {
		if !errors.Is(err, identity.ErrBadToken) {
			s.fail(w, r, err)
			return
		}
		d.Invalid, d.Error = true, "This link has already been used or has expired. You can ask for a new one."
		s.render(w, r, http.StatusGone, "reset.html", d)
		return
	}
	d.Token = r.PathValue("token")
	s.render(w, r, http.StatusOK, "reset.html", d)
}

func (s *Server) resetSubmit(w http.ResponseWriter, r *http.Request, v *viewer) {
	confirm := r.PostFormValue("confirm")
	in := newPasswordIn{Token: r.PathValue("token"), Password: r.PostFormValue("password"), confirm: &confirm}
	if _, err := s.opResetComplete(r, v, in); err != nil {
		d := s.data("Choose a new password")
		d.Token = in.Token
		s.pageRefused(w, r, err, d, func(status int, d pageData) {
			d.Invalid = status == http.StatusGone
			s.render(w, r, status, "reset.html", d)
		})
		return
	}
	http.Redirect(w, r, "/login?ended=reset", http.StatusSeeOther)
}

func (s *Server) completeReset(r *http.Request, token, pw string) error {
	u, err := s.Identity.CompleteReset(r.Context(), token, pw, info(r).ip)
	if err != nil {
		return err
	}
	s.Log.InfoContext(r.Context(), "password reset", "user", u.ID, "ip", info(r).ip)
	s.endUser(r.Context(), u.ID, "reset")
	return nil
}

func (s *Server) logoutSubmit(w http.ResponseWriter, r *http.Request, v *viewer) {
	s.opSignOut(r, v, struct{}{}) // never refuses
	clearSessionCookie(w)
	http.Redirect(w, r, "/login?ended=user", http.StatusSeeOther)
}

type inboxOut struct {
	Messages []listItem `json:"messages"`
	// NoticeReferences are the references of the account's latest notices
	// (issue 13.9, noticeref.go).
	NoticeReferences []noticeRefView `json:"notice_references"`
}

// opInbox lists the viewer's messages that have not expired, newest
// first, from their sealed summaries (list).
func (s *Server) opInbox(r *http.Request, v *viewer, _ struct{}) (inboxOut, error) {
	items, err := s.list(r.Context(), v)
	return inboxOut{Messages: items, NoticeReferences: s.noticeRefs(r.Context(), v.user.ID)}, err
}

func (s *Server) inboxPage(w http.ResponseWriter, r *http.Request, v *viewer) {
	out, err := s.opInbox(r, v, struct{}{})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	items := out.Messages
	d := s.data("Your secure messages")
	d.SignedIn, d.Messages = true, items
	for _, it := range items {
		if it.Locked {
			d.Locked++
		}
	}
	d.NoticeRefs = out.NoticeReferences // issue 13.9
	s.render(w, r, http.StatusOK, "inbox.html", d)
}

func (s *Server) notFound(w http.ResponseWriter, r *http.Request) {
	d := s.data("Message not found")
	d.SignedIn = true
	d.Error = "This message does not exist, has expired, or is not addressed to you."
	s.render(w, r, http.StatusNotFound, "error.html", d)
}

func (s *Server) messagePage(w http.ResponseWriter, r *http.Request, v *viewer) {
	s.renderMessage(w, r, v, r.PathValue("id"), "")
}

// renderMessage shows a message with the recipient's replies and the reply
// form; problem is a refused reply's explanation.
func (s *Server) renderMessage(w http.ResponseWriter, r *http.Request, v *viewer, id, problem string) {
	o, err := s.openAndAudit(w, r, v, "read")
	if err != nil {
		return
	}
	d := s.data("Secure message")
	d.SignedIn, d.ID, d.M, d.Signature, d.ExpiresAt = true, o.Meta.ID, o.View, o.Signature.String(), o.Meta.ExpiresAt
	d.SentBy = s.sentBy(r.Context(), o.Meta)
	d.NoticeRefs = s.noticeRefs(r.Context(), v.user.ID) // issue 13.9
	d.HasHTML = o.View.HTML != ""
	d.BlockedImages = message.BlockedImages(o.View.HTML) // issue 13.7: say so
	d.Inline = inlineAttachments(o.View.Attachments)
	d.Error = problem
	if problem != "" {
		d.Form = keptInput(r.PostForm) // the refused reply's text stays in the form
	}
	if r.URL.Query().Get("replied") == "1" {
		d.Notice = "Your reply was sent securely."
	}
	dec := decisionOf(o.Meta)
	d.CanReply = o.Meta.ReplyTo == "" && !dec.NoReply && o.Meta.SenderID != v.user.ID
	d.NoDownload = dec.NoDownload
	if d.Replies, err = s.replies(r, v, id); err != nil {
		s.fail(w, r, err)
		return
	}
	status := http.StatusOK
	if problem != "" {
		status = http.StatusBadRequest
	}
	s.render(w, r, status, "message.html", d)
}

type openIn struct {
	ID   string
	What string // read, content or attachment: the audit action's last part
}

// opOpenMessage opens one of the viewer's messages: every refusal is
// audited where it touches a message that exists (denied, recalled,
// disposed, download not allowed), every access is audited before any of
// it is returned (no entry, no access), logged, and marks the message read.
func (s *Server) opOpenMessage(r *http.Request, v *viewer, in openIn) (*opened, error) {
	id, what := in.ID, in.What
	o, err := s.open(r.Context(), v, id)
	if de, ok := errors.AsType[disposedError](err); ok {
		s.audit(r, "message."+what, "message", id, "denied", map[string]string{"why": "disposed"})
		return nil, refused(http.StatusGone, "disposed", "This message was deleted on "+web.When(de.at, s.Org.Location())+
			", at the end of the time "+s.Org.Name+" keeps messages, so it can no longer be shown. If you still need it, contact "+
			s.Org.Contact+".", err)
	}
	switch {
	case errors.Is(err, errNoMessage):
		s.audit(r, "message."+what, "message", id, "denied", nil)
		s.Log.WarnContext(r.Context(), "message access denied", "user", v.rec.UserID, "message", id, "ip", info(r).ip, "what", what)
		return nil, refused(http.StatusNotFound, "not_found", noSuchMessage, err)
	case errors.Is(err, errPasscode):
		oe := refused(http.StatusForbidden, "passcode_required", "Enter the passcode the sender gave you (by phone or in person) to open this message.", err)
		oe.Field = "code"
		return nil, oe
	case errors.Is(err, errNeeds2FA):
		// The rule that delivered this message asks for a second factor.
		code := "mfa_required"
		if len(v.user.TOTPSecretEnc) == 0 {
			code = "mfa_enrolment_required"
		}
		return nil, refused(http.StatusForbidden, code, "This message needs the second sign-in step.", err)
	case errors.Is(err, errRecalled):
		s.audit(r, "message."+what, "message", id, "denied", map[string]string{"why": "recalled"})
		return nil, refused(http.StatusGone, "recalled", "The sender recalled this message, so it can no longer be shown. Contact "+
			s.Org.Contact+" if you need it.", err)
	case errors.Is(err, errLocked):
		return nil, refused(http.StatusConflict, "locked", "This message arrived before your password was reset. "+
			"Your organisation can restore access to it; contact "+s.Org.Contact+".", err)
	case err != nil:
		return nil, err
	}
	if what == "attachment" && decisionOf(o.Meta).NoDownload {
		s.audit(r, "message.attachment", "message", id, "denied", map[string]string{"why": "download not allowed"})
		return nil, refused(http.StatusForbidden, "download_not_allowed",
			"The organisation's policy does not allow downloading this message's attachments.", errNoMessage)
	}
	// Every access to PHI is in the trail; no entry, no access.
	if err := s.audit(r, "message."+what, "message", id, "ok", map[string]string{"signature": o.Signature.String()}); err != nil {
		return nil, err
	}
	s.Log.InfoContext(r.Context(), "message opened", "user", v.rec.UserID, "message", id, "ip", info(r).ip,
		"what", what, "signature", o.Signature.String())
	if o.Meta.ReadAt == nil {
		if err := s.Store.MarkRead(r.Context(), id, s.now()); err != nil {
			s.Log.ErrorContext(r.Context(), "mark read", "message", id, "err", err)
		} else {
			s.publishChange(r.Context(), events.MessageRead, o.Meta)
		}
	}
	return o, nil
}

// openTitles are the error pages' titles for a refused opening.
var openTitles = map[string]string{"not_found": "Message not found", "disposed": "Message deleted", "recalled": "Message recalled",
	"locked": "Message waiting", "download_not_allowed": "Download not allowed"}

// openAndAudit opens a message for the routes that serve it in both
// faces (opOpenMessage) and, when it fails, writes the answer itself:
// JSON for the API; for a page the passcode form, the second sign-in step,
// or an error page in the same words.
func (s *Server) openAndAudit(w http.ResponseWriter, r *http.Request, v *viewer, what string) (*opened, error) {
	o, err := s.opOpenMessage(r, v, openIn{ID: r.PathValue("id"), What: what})
	if err == nil {
		return o, nil
	}
	if isAPI(r) {
		s.apiError(w, r, err)
		return nil, err
	}
	s.pageRefused(w, r, err, s.data("Secure message"), func(status int, d pageData) {
		switch code := asRefusal(err).Code; code {
		case "passcode_required":
			d.Title, d.ID, d.Error = "Enter the passcode", r.PathValue("id"), "" // the form says what to do
			s.render(w, r, status, "passcode.html", d)
		case "mfa_enrolment_required":
			http.Redirect(w, r, "/account/2fa?next="+url.QueryEscape(r.URL.Path), http.StatusSeeOther)
		case "mfa_required":
			http.Redirect(w, r, "/login/2fa", http.StatusSeeOther)
		default:
			d.Title = openTitles[code]
			s.render(w, r, status, "error.html", d)
		}
	})
	return nil, err
}

// messageContent serves the sanitised HTML body for the sandboxed frame.
// Its CSP allows nothing to load but inline data: images, and sandboxes the
// document (no scripts, no forms). allow-same-origin lets the portal's own
// page.js read the content's height to size the frame (issue 13.7); with
// no script able to run in the frame (sanitiser, CSP and sandbox each
// forbid it) the frame cannot use that origin itself.
func (s *Server) messageContent(w http.ResponseWriter, r *http.Request, v *viewer) {
	o, err := s.openAndAudit(w, r, v, "content")
	if err != nil {
		return
	}
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'none'; img-src data:; style-src 'unsafe-inline'; frame-ancestors 'self'; sandbox allow-same-origin allow-popups allow-popups-to-escape-sandbox")
	h.Set("X-Frame-Options", "SAMEORIGIN")
	h.Set("Content-Type", "text/html; charset=utf-8")
	w.Write([]byte(`<!doctype html><html><head><meta charset="utf-8"><base target="_blank"></head><body style="font-family:sans-serif;word-wrap:break-word">`))
	w.Write([]byte(message.SanitizeHTML(o.View.HTML)))
	w.Write([]byte(`</body></html>`))
}

// attachment serves one attachment: a PDF or an image for the browser to
// show, anything else as a download (serveAttachment, attachment.go).
func (s *Server) attachment(w http.ResponseWriter, r *http.Request, v *viewer) {
	o, err := s.openAndAudit(w, r, v, "attachment")
	if err != nil {
		return
	}
	aid := r.PathValue("aid")
	for _, a := range o.View.Attachments {
		if a.ID != aid {
			continue
		}
		serveAttachment(w, r, a)
		return
	}
	if strings.HasPrefix(r.URL.Path, "/api/") {
		writeJSONError(w, http.StatusNotFound, "not_found", "no such attachment")
		return
	}
	s.notFound(w, r)
}
