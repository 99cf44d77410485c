package portal

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/phigate/phigate/audit"
	pcrypto "github.com/phigate/phigate/crypto"
	"github.com/phigate/phigate/identity"
	"github.com/phigate/phigate/limiter"
	"github.com/phigate/phigate/logx"
	"github.com/phigate/phigate/store"
	"github.com/phigate/phigate/web"
)

// accountKey is the lock-out counter's name for an address: its blind index,
// never the address itself (counters may live in Redis).
func (s *Server) accountKey(email string) string { return indexKey(s.Identity.Keys.EmailIndex(email)) }

func indexKey(emailIndex []byte) string { return hex.EncodeToString(emailIndex)[:32] }

// checkPassword is the one password check behind the sign-in page and API:
// the attempt is reserved against the lock-out and per-IP budgets first
// (atomically, so concurrent guesses cannot all pass one check before any
// is counted: issue 8.1), then the password is hashed in the caller's fair
// share of the hash queue, then the reservation is settled
// (HIPAA 164.308(a)(5)(ii)(C), log-in monitoring).
func (s *Server) checkPassword(r *http.Request, email, pw string) (*store.User, []byte, error) {
	ctx, ip, acct := r.Context(), ipKey(info(r).ip), s.accountKey(email)
	res, err := s.reserve(ctx, acct, ip)
	if err != nil {
		if reason := refusalReason(err); reason != "bad-credentials" {
			s.Log.DebugContext(ctx, "sign-in refused", "reason", reason, "ip", ip)
			s.auditRefusal(r, acct, ip, reason, email)
		}
		return nil, nil, err
	}
	// The hash waits in this address's share of the queue; an address that
	// has made few attempts goes before those that are guessing, and a
	// browser that has signed in to this account before (its device
	// cookie, device.go) before all of them (issue 12.3).
	client := pcrypto.HashClient{Key: ip, Standing: res.AddressAttempts()}
	if s.hasDeviceCookie(r, acct) {
		client.Device = acct
		s.Log.DebugContext(ctx, "sign-in with a device cookie", "ip", ip)
	}
	hashCtx := pcrypto.WithHashClient(ctx, client)
	u, priv, err := s.Identity.Login(hashCtx, email, pw)
	if errors.Is(err, identity.ErrBadCredentials) {
		s.audit(r, "auth.login", "account", acct, "failed", map[string]string{"email": email})
		s.countFailure(r, acct, "password", res)
		return nil, nil, err
	}
	// With a second factor to come, the count is reset only when that
	// succeeds too (otherwise alternating a right password with wrong codes
	// would never lock the account): the attempt is just given back. So is
	// one that was never evaluated (a full hash queue, a fault).
	settle := res.Release
	if err == nil && !identity.NeedsMFA(u, s.RequirePatient2FA) {
		settle = res.Succeeded
	}
	// The client may have gone; the counters must still be settled.
	if serr := settle(context.WithoutCancel(ctx)); serr != nil && err == nil {
		err = serr
	}
	if err != nil {
		return nil, nil, err
	}
	return u, priv, nil
}

// auditRefusal records a sign-in refused before its password was looked
// at. Refusals repeat as fast as a client can send them, so they are
// recorded once per window and key with a count (issue 8.3): a locked
// account per address and account, a throttled address per address
// whatever the account (an address spraying accounts is one client).
func (s *Server) auditRefusal(r *http.Request, acct, ipk, reason, email string) {
	if s.Refusals == nil || s.Audit == nil {
		s.audit(r, "auth.login", "account", acct, reason, map[string]string{"email": email})
		return
	}
	key := "auth.login/" + reason + "/" + ipk
	if reason == "locked" {
		key += "/" + acct
	}
	e := audit.Entry{Actor: "anonymous", IP: info(r).ip, Action: "auth.login", ObjectType: "account", ObjectID: acct,
		Outcome: reason, Correlation: logx.Correlation(r.Context()), Details: map[string]string{"email": email}}
	if err := s.Refusals.Record(r.Context(), key, e); err != nil {
		s.Log.ErrorContext(r.Context(), "audit write failed", "action", e.Action, "err", err)
	}
}

// reserveWait bounds how long an attempt waits for the account's other
// attempts in progress to be settled (limiter.Reserve) before it is
// answered 429.
const reserveWait = 10 * time.Second

// reserve takes the attempt's place in the lock-out counters before it is
// evaluated (limiter.Reserve, issue 8.1).
func (s *Server) reserve(ctx context.Context, acct, ip string) (*limiter.Reservation, error) {
	wait, cancel := context.WithTimeout(ctx, reserveWait)
	defer cancel()
	return s.Limiter.Reserve(wait, acct, ip)
}

// countFailure settles res as a wrong guess and records the lock if this
// guess was the one that set it.
func (s *Server) countFailure(r *http.Request, acct, what string, res *limiter.Reservation) {
	ctx, ip := r.Context(), info(r).ip
	s.Log.WarnContext(ctx, "sign-in failed", "factor", what, "ip", ip)
	s.Metrics.SignInFailure(what)
	// The client may have gone; the counters must still be settled.
	locked, until, err := res.Failed(context.WithoutCancel(ctx))
	if err != nil {
		s.Log.ErrorContext(ctx, "lock-out counter", "err", err)
		return
	}
	if locked {
		s.audit(r, "auth.lockout", "account", acct, "ok", map[string]string{"until": until.UTC().Format(time.RFC3339)})
		s.Metrics.Lockout()
		s.Log.WarnContext(ctx, "account locked", "account", acct[:12], "until", until, "ip", ip)
	}
}

// ipKey is the throttling counter's name for a client address: a keyed
// pseudonym (an IP address identifies a person under HIPAA, and counters may
// live in Redis) of the address, or of its /64 for IPv6, where one client
// holds a whole prefix.
func ipKey(ip string) string {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return logx.Pseudonym(ip)
	}
	a = a.Unmap()
	if a.Is6() {
		p, _ := a.Prefix(64)
		return logx.Pseudonym(p.String())
	}
	return logx.Pseudonym(a.String())
}

func refusalReason(err error) string {
	var le *limiter.LockedError
	var te *limiter.ThrottledError
	switch {
	case errors.As(err, &le):
		return "locked"
	case errors.As(err, &te):
		return "throttled"
	}
	return "bad-credentials"
}

// signInRefusal turns a refused sign-in into words for the person, or
// reports that err is not a refusal (an internal fault).
func (s *Server) signInRefusal(err error) (string, bool) {
	var le *limiter.LockedError
	var te *limiter.ThrottledError
	switch {
	case errors.Is(err, identity.ErrBadCredentials):
		return "That email address and password don't match. Check them and try again.", true
	case errors.Is(err, identity.ErrNoTOTP):
		return "Set up an authenticator app first: open /account/2fa.", true
	case errors.Is(err, identity.ErrBadCode):
		return "That code is not right, or was already used. Enter the current code from your authenticator app, or one of your recovery codes.", true
	case errors.As(err, &le):
		mins := max(int(time.Until(le.Until).Round(time.Minute)/time.Minute), 1)
		return fmt.Sprintf("This account is locked for %d more %s after too many failed attempts. Try again later, or contact %s.", mins, web.Noun(mins, "minute"), s.Org.Contact), true
	case errors.As(err, &te):
		return "Too many failed attempts from your network. Wait " + web.Count(max(int(te.RetryAfter.Round(time.Minute)/time.Minute), 1), "minute") + " and try again.", true
	}
	return "", false
}

// checkSecondFactor verifies a TOTP or recovery code for v's pending
// session, counts failures against the same lock-out, and on success gives
// the session a new id with the second factor marked done (returned as the
// new cookie value).
func (s *Server) checkSecondFactor(r *http.Request, v *viewer, code string) (string, error) {
	ctx, acct := r.Context(), indexKey(v.user.EmailIndex)
	res, err := s.reserve(ctx, acct, ipKey(info(r).ip))
	if err != nil {
		return "", err
	}
	usedRecovery, err := s.Identity.VerifySecondFactor(ctx, v.user, code)
	if errors.Is(err, identity.ErrBadCode) {
		s.audit(r, "auth.2fa", "user", v.user.ID, "failed", nil)
		s.countFailure(r, acct, "second-factor", res)
		return "", err
	}
	if err != nil {
		_ = res.Release(context.WithoutCancel(ctx))
		return "", err
	}
	if err := res.Succeeded(context.WithoutCancel(ctx)); err != nil {
		return "", err
	}
	s.Log.InfoContext(ctx, "second factor ok", "user", v.user.ID, "recovery_code", usedRecovery, "ip", info(r).ip)
	method := "totp"
	if usedRecovery {
		method = "recovery-code"
	}
	s.audit(r, "auth.2fa", "user", v.user.ID, "ok", map[string]string{"method": method})
	return s.rotateToken(r, v)
}

// signInRefused turns a refused sign-in step into the refusal both faces
// answer (statuses and codes as docs/api.md lists them), or returns err
// unchanged if it is a fault.
func (s *Server) signInRefused(err error) error {
	msg, ok := s.signInRefusal(err)
	if !ok {
		return err
	}
	var le *limiter.LockedError
	var te *limiter.ThrottledError
	switch {
	case errors.As(err, &le):
		return refused(http.StatusLocked, "locked", msg, err)
	case errors.As(err, &te):
		oe := refused(http.StatusTooManyRequests, "throttled", msg, err)
		oe.RetryAfter = te.RetryAfter.Truncate(time.Second) + time.Second
		return oe
	case errors.Is(err, identity.ErrBadCode):
		oe := refused(http.StatusUnauthorized, "bad_code", msg, err)
		oe.Field = "code"
		return oe
	case errors.Is(err, identity.ErrNoTOTP):
		return refused(http.StatusForbidden, "mfa_enrolment_required", msg, err)
	}
	oe := refused(http.StatusUnauthorized, "bad_credentials", msg, err)
	oe.Field = "password"
	return oe
}

// signInIn is a sign-in with a password: the page's form, the API's body.
type signInIn struct {
	Email    string `json:"email"`
	Password string `json:"password"`
}

// signedIn is a sign-in step's result; token is the session's new cookie
// value, which each face sets ("" keeps the cookie); device is the device
// cookie a completed sign-in earned (device.go), which each face sets
// with setDeviceCookie ("" none).
type signedIn struct {
	signInJSON
	token  string
	device string
}

// opSignIn checks the password (lock-out and throttling first, see
// checkPassword) and starts a session, its second factor still to come
// if the account needs one (signedIn.Next).
func (s *Server) opSignIn(r *http.Request, _ *viewer, in signInIn) (signedIn, error) {
	u, priv, err := s.checkPassword(r, strings.TrimSpace(in.Email), in.Password)
	if err != nil {
		return signedIn{}, s.signInRefused(err)
	}
	mfaDone := !identity.NeedsMFA(u, s.RequirePatient2FA)
	token, err := s.newSession(r, u, priv, "password", mfaDone)
	if err != nil {
		return signedIn{}, err
	}
	out := signedIn{signInJSON: signInJSON{User: userJSON{u.ID, u.Role}, Next: nextStep(u, mfaDone)}, token: token}
	if mfaDone { // with a second factor to come, opSecondFactor issues it
		out.device = s.issueDevice(r, indexKey(u.EmailIndex))
	}
	return out, nil
}

type codeIn struct {
	Code string `json:"code"`
}

// opSecondFactor completes a pending sign-in with a TOTP or recovery code;
// a session that has done it already is simply told so.
func (s *Server) opSecondFactor(r *http.Request, v *viewer, in codeIn) (signedIn, error) {
	out := signedIn{signInJSON: signInJSON{User: userJSON{v.user.ID, v.user.Role}}}
	if v.mfaOK {
		return out, nil
	}
	token, err := s.checkSecondFactor(r, v, in.Code)
	if err != nil {
		return signedIn{}, s.signInRefused(err)
	}
	out.token, out.device = token, s.issueDevice(r, indexKey(v.user.EmailIndex))
	return out, nil
}

// opSignOut ends the viewer's session; the faces clear the cookie.
func (s *Server) opSignOut(r *http.Request, v *viewer, _ struct{}) (struct{}, error) {
	if err := s.Sessions.End(r.Context(), v.token, "user"); err != nil {
		s.Log.ErrorContext(r.Context(), "end session", "err", err)
	}
	return struct{}{}, nil
}

// opSignOutEverywhere ends every session of the viewer's account; the
// faces clear this browser's cookie.
func (s *Server) opSignOutEverywhere(r *http.Request, v *viewer, _ struct{}) (struct{}, error) {
	s.endUser(r.Context(), v.user.ID, "everywhere")
	return struct{}{}, nil
}

type resetRequestIn struct {
	Email string `json:"email"`
}

type messageOut struct {
	Message string `json:"message"`
}

// opResetRequest emails a reset link if the address has an account; the
// answer is the same either way, throttled or not (requestReset).
func (s *Server) opResetRequest(r *http.Request, _ *viewer, in resetRequestIn) (messageOut, error) {
	if err := s.requestReset(r, in.Email); err != nil {
		return messageOut{}, err
	}
	return messageOut{Message: resetSent}, nil
}

// newPasswordIn is a claim or a reset: the link's token and the chosen
// password. confirm is the page's second box (the API has none).
type newPasswordIn struct {
	Token    string `json:"token"`
	Password string `json:"password"`
	confirm  *string
}

// checkNewPassword refuses two different passwords typed in the form.
func checkNewPassword(in newPasswordIn) error {
	if in.confirm != nil && *in.confirm != in.Password {
		oe := refused(http.StatusBadRequest, "password_mismatch",
			"The two passwords are not the same. Type the same password in both boxes.", nil)
		oe.Field = "confirm"
		return oe
	}
	return nil
}

// newPasswordRefused names a refused claim or reset, or returns err as a
// fault; link is "claim" or "reset".
func newPasswordRefused(err error, badLink string) error {
	if problem, ok := identity.PasswordProblem(err); ok {
		oe := refused(http.StatusBadRequest, "weak_password", problem, err)
		oe.Field = "password"
		return oe
	}
	if errors.Is(err, identity.ErrBadToken) {
		return refused(http.StatusGone, "bad_token", badLink, err)
	}
	return err
}

const (
	claimLinkBad = "This link has already been used or has expired."
	resetLinkBad = "This link has already been used or has expired. You can ask for a new one."
)

// claimed is a claim's result: the session, and the account's only
// message if it has exactly one (where the page goes).
type claimed struct {
	signedIn
	only string
}

// opClaim sets the password of a pending account from its claim link,
// re-wraps its waiting messages to the new key and starts a session. A
// link that cannot set a password (used, expired, superseded, or nothing
// left to read) is 410 with the link's state in words (newlink.go).
func (s *Server) opClaim(r *http.Request, v *viewer, in newPasswordIn) (claimed, error) {
	if err := checkNewPassword(in); err != nil {
		return claimed{}, err
	}
	u, priv, err := s.Identity.Claim(r.Context(), in.Token, in.Password, info(r).ip)
	if errors.Is(err, identity.ErrBadToken) || errors.Is(err, identity.ErrNothingToRead) {
		st, serr := s.opClaimLinkStatus(r, v, claimLinkIn{Token: in.Token})
		if serr != nil {
			return claimed{}, serr
		}
		code := "bad_token"
		if st.State == linkWithdrawn || st.State == linkNothing {
			code = "nothing_to_read"
		}
		oe := refused(http.StatusGone, code, st.Message, err)
		oe.Extra = map[string]any{"state": st.State, "new_link": st.NewLink}
		return claimed{}, oe
	}
	if err != nil {
		return claimed{}, newPasswordRefused(err, claimLinkBad)
	}
	s.Log.InfoContext(r.Context(), "account claimed", "user", u.ID, "ip", info(r).ip)
	mfaDone := !identity.NeedsMFA(u, s.RequirePatient2FA)
	token, err := s.newSession(r, u, priv, "claim", mfaDone)
	if err != nil {
		return claimed{}, err
	}
	out := claimed{signedIn: signedIn{signInJSON: signInJSON{User: userJSON{u.ID, u.Role}, Next: nextStep(u, mfaDone)}, token: token}}
	if msgs, err := s.Store.ListMessages(r.Context(), u.ID, s.now()); err == nil && len(msgs) == 1 {
		out.only = msgs[0].ID
	}
	return out, nil
}

// claimLinkOf reads the link's state back from a claim refused for its
// link (opClaim), for the page that explains it.
func claimLinkOf(err error) (claimLinkOut, bool) {
	oe := asRefusal(err)
	if oe == nil || oe.Status != http.StatusGone {
		return claimLinkOut{}, false
	}
	state, _ := oe.Extra["state"].(string)
	newLink, _ := oe.Extra["new_link"].(bool)
	return claimLinkOut{State: state, NewLink: newLink, Message: oe.Msg}, true
}

// opResetComplete sets the new password of a reset link and ends every
// session of the account.
func (s *Server) opResetComplete(r *http.Request, _ *viewer, in newPasswordIn) (struct{}, error) {
	if err := checkNewPassword(in); err != nil {
		return struct{}{}, err
	}
	if err := s.completeReset(r, in.Token, in.Password); err != nil {
		return struct{}{}, newPasswordRefused(err, resetLinkBad)
	}
	return struct{}{}, nil
}
