package portal

// Issue 13.1: links that never strand a patient. A claim link that expired,
// was used, or was replaced by a newer one says so in plain words and
// offers "send me a new link"; a link to an account already claimed points
// to sign-in and reset; a link to an account with nothing left to read
// (the sender withdrew the message, or it expired) says so and asks for no
// password. Two operations (ops.go), each with a page and an API face:
//
//	opClaimLinkStatus  GET /claim/{token}            POST /api/v1/claim/status
//	opNewClaimLink     POST /claim/{token}/new-link  POST /api/v1/claim/new-link
//
// The new link goes only to the address on file for the link's account
// (nobody types an address), through the notice outbox like every notice
// (sealed, PHI-free, DKIM-signed at send), in the transaction that ends the
// older links and records account.claim.new-link. The answer is the same
// whether or not a link was sent, so pressing the button reveals nothing.

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/phigate/phigate/audit"
	"github.com/phigate/phigate/identity"
	"github.com/phigate/phigate/limiter"
	"github.com/phigate/phigate/notify"
	"github.com/phigate/phigate/store"
)

// What a claim link can do now.
const (
	linkReady     = "ready"     // the password form
	linkEnded     = "expired"   // expired, used or replaced; the account still waits: offer a new link
	linkClaimed   = "claimed"   // the account has a password: sign in or reset
	linkWithdrawn = "withdrawn" // nothing left to read, the sender withdrew it: no password asked
	linkNothing   = "nothing"   // nothing left to read, it expired: no password asked
	linkInvalid   = "invalid"   // no such claim link, or a disabled account
)

// newLinkInterval spaces the new links of one account (store.RenewClaim
// holds it, whatever the node); newLinkWait bounds how long a press waits
// for the account's other presses in progress (limiter.Reserve).
const (
	newLinkInterval = 15 * time.Minute
	newLinkWait     = 200 * time.Millisecond
)

type claimLinkIn struct {
	Token string `json:"token"`
}

type claimLinkOut struct {
	State   string `json:"state"`
	NewLink bool   `json:"new_link"` // "send me a new link" is offered
	Message string `json:"message"`
}

type newLinkOut struct {
	Status  string `json:"status"`
	Message string `json:"message"`
}

// claimLinkWords are the plain words each state is explained in.
func (s *Server) claimLinkWords(state string) string {
	switch state {
	case linkEnded:
		return "This link no longer works: links in our emails work for a limited time, and only the newest one works. Your secure message is still waiting for you."
	case linkClaimed:
		return "This link was already used to set your password. Sign in with your email address and password; if you forgot the password, you can reset it."
	case linkWithdrawn:
		return s.Org.Name + " withdrew the secure message this link was for. There is nothing to read, and you don't need to set a password. Questions: contact " + s.Org.Contact + "."
	case linkNothing:
		return "The secure message this link was for has expired. There is nothing to read, and you don't need to set a password. If you still need it, contact " + s.Org.Contact + "."
	case linkInvalid:
		return "This link can't be used. If you already set a password, sign in. Otherwise, contact " + s.Org.Contact + " and ask them to send the message again."
	}
	return "Choose a password to open your secure message."
}

// newLinkAnswer is the one answer to "send me a new link".
func (s *Server) newLinkAnswer() string {
	return "If this link belongs to an account that is still waiting for its password, we have emailed a new link to the address the message was sent to. " +
		"It can take a few minutes to arrive; check your spam folder too. Only the newest link works. " +
		"We send at most one new link every 15 minutes; if nothing arrives, contact " + s.Org.Contact + "."
}

// opClaimLinkStatus tells what a claim link can do now.
func (s *Server) opClaimLinkStatus(r *http.Request, _ *viewer, in claimLinkIn) (claimLinkOut, error) {
	state, err := s.claimLinkState(r.Context(), in.Token)
	if err != nil {
		return claimLinkOut{}, err
	}
	return claimLinkOut{State: state, NewLink: state == linkEnded, Message: s.claimLinkWords(state)}, nil
}

func (s *Server) claimLinkState(ctx context.Context, token string) (string, error) {
	t, u, err := s.Identity.ClaimLink(ctx, token)
	if errors.Is(err, identity.ErrBadToken) {
		return linkInvalid, nil
	}
	if err != nil {
		return "", err
	}
	switch u.Status {
	case store.StatusActive:
		return linkClaimed, nil
	case store.StatusPending:
	default:
		return linkInvalid, nil
	}
	readable, withdrawn, err := s.Store.ClaimStanding(ctx, u.ID, s.now())
	if err != nil {
		return "", err
	}
	switch {
	case readable == 0 && withdrawn > 0:
		return linkWithdrawn, nil
	case readable == 0:
		return linkNothing, nil
	case !s.Identity.LinkUsable(t):
		return linkEnded, nil
	}
	return linkReady, nil
}

// opNewClaimLink sends a new claim link for the account of in.Token, if it
// is still waiting for its password and has something to read, at most
// one per newLinkInterval; each press counts against the account and the
// client's address (limiter). Its answer never says which happened.
func (s *Server) opNewClaimLink(r *http.Request, _ *viewer, in claimLinkIn) (newLinkOut, error) {
	ctx, now := r.Context(), s.now()
	out := newLinkOut{Status: "accepted", Message: s.newLinkAnswer()}
	quiet := func(why string) (newLinkOut, error) {
		s.Log.InfoContext(ctx, "new claim link not sent", "why", why, "ip", info(r).ip)
		return out, nil
	}
	_, u, err := s.Identity.ClaimLink(ctx, in.Token)
	if errors.Is(err, identity.ErrBadToken) {
		return quiet("no such claim link")
	}
	if err != nil {
		return out, err
	}
	if u.Status != store.StatusPending {
		return quiet("account not pending")
	}
	if readable, _, err := s.Store.ClaimStanding(ctx, u.ID, now); err != nil {
		return out, err
	} else if readable == 0 {
		return quiet("nothing to read")
	}
	// Counted before any work: the account's presses (limiter.MaxFailures
	// per lock-out period) and the address's (its sign-in failure budget),
	// in one atomic step, so a burst cannot all pass one check.
	wait, cancel := context.WithTimeout(ctx, newLinkWait)
	res, err := s.Limiter.Reserve(wait, "newlink:"+u.ID, ipKey(info(r).ip))
	cancel()
	if storeUnavailable(err) {
		return out, err
	}
	if err != nil {
		why := refusalReason(err) // locked (this account's presses) or throttled (this address)
		if errors.Is(err, limiter.ErrInFlight) {
			why = "presses in progress"
		}
		return quiet("rate limited: " + why)
	}
	// Every press admitted counts, whether or not a link goes out. The
	// client may have gone; the counters must still be settled.
	defer func() { _, _, _ = res.Failed(context.WithoutCancel(ctx)) }()

	addr, err := s.Identity.Email(u)
	if err != nil {
		return out, err
	}
	ttl := 7 * 24 * time.Hour
	if s.Intake != nil && s.Intake.Opts.ClaimTTL > 0 {
		ttl = s.Intake.Opts.ClaimTTL
	}
	raw, tok := s.Identity.NewClaimToken(u.ID, ttl)
	item, err := notify.NewItem(s.Identity.Keys, notify.KindClaimLink,
		notify.Notice{To: addr, Link: s.PublicURL + "/claim/" + raw, Claim: true, ExpiresAt: tok.ExpiresAt}, u.ID, "", now)
	if err != nil {
		return out, err
	}
	b, err := audit.Prepare(ctx, s.Audit, audit.Entry{Actor: "anonymous", IP: info(r).ip, Action: "account.claim.new-link",
		ObjectType: "user", ObjectID: u.ID, Outcome: audit.OK, Details: map[string]string{"outbox": item.ID}})
	if err != nil {
		return out, err
	}
	err = s.Store.RenewClaim(ctx, store.ClaimRenewal{UserID: u.ID, Token: tok, Notice: item, NoticeKind: notify.KindClaimLink,
		Since: now.Add(-newLinkInterval), At: now, Audit: b.Func()})
	switch {
	case errors.Is(err, store.ErrTooSoon):
		return quiet("a new link went out less than 15 minutes ago")
	case errors.Is(err, store.ErrNotFound):
		return quiet("account claimed meanwhile")
	case err != nil:
		return out, err
	}
	if s.Intake != nil && s.Intake.Notifier != nil {
		s.Intake.Notifier.Kick()
	}
	s.Log.InfoContext(ctx, "new claim link sent", "user", u.ID, "outbox", item.ID, "ip", info(r).ip)
	return out, b.Committed(ctx)
}

// Faces.

// renderClaimLink is the page of a claim link that asks for no password:
// its state in plain words and what the person can do.
func (s *Server) renderClaimLink(w http.ResponseWriter, r *http.Request, token string, st claimLinkOut) {
	d := s.data(claimLinkTitle(st.State))
	d.Token, d.LinkState, d.Notice = token, st.State, st.Message
	s.render(w, r, http.StatusGone, "claim_link.html", d)
}

func claimLinkTitle(state string) string {
	switch state {
	case linkEnded:
		return "This link has expired"
	case linkClaimed:
		return "Your password is already set"
	case linkWithdrawn:
		return "The sender withdrew this message"
	case linkNothing:
		return "This message has expired"
	}
	return "This link can't be used"
}

func (s *Server) newLinkSubmit(w http.ResponseWriter, r *http.Request, v *viewer) {
	token := r.PathValue("token")
	if _, err := s.opNewClaimLink(r, v, claimLinkIn{Token: token}); err != nil {
		s.fail(w, r, err)
		return
	}
	// POST-redirect-GET: a reload does not press the button again.
	http.Redirect(w, r, "/claim/"+token+"/new-link", http.StatusSeeOther)
}

// newLinkSentPage shows the one answer, whatever the link.
func (s *Server) newLinkSentPage(w http.ResponseWriter, r *http.Request, _ *viewer) {
	d := s.data("Check your email")
	d.LinkState, d.Notice = "sent", s.newLinkAnswer()
	s.render(w, r, http.StatusOK, "claim_link.html", d)
}

func (s *Server) apiClaimStatus(w http.ResponseWriter, r *http.Request, v *viewer) {
	var in claimLinkIn
	if !decodeJSON(w, r, &in) {
		return
	}
	out, err := s.opClaimLinkStatus(r, v, in)
	s.apiAnswer(w, r, http.StatusOK, out, err)
}

func (s *Server) apiNewClaimLink(w http.ResponseWriter, r *http.Request, v *viewer) {
	var in claimLinkIn
	if !decodeJSON(w, r, &in) {
		return
	}
	out, err := s.opNewClaimLink(r, v, in)
	s.apiAnswer(w, r, http.StatusAccepted, out, err)
}

// newLinkRoutes are issue 13.1's routes (server.go's table calls it).
func (s *Server) newLinkRoutes(h func(string, Perm, handler)) {
	h("POST /claim/{token}/new-link", PermPublic, s.newLinkSubmit)
	h("GET /claim/{token}/new-link", PermPublic, s.newLinkSentPage)
	h("POST /api/v1/claim/status", PermPublic, s.apiClaimStatus)
	h("POST /api/v1/claim/new-link", PermPublic, s.apiNewClaimLink)
}
