package portal

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/phigate/phigate/audit"
	"github.com/phigate/phigate/notify"
	"github.com/phigate/phigate/store"
)

// Failed notices (issue 10.6): admins see the notices and pushes whose
// last attempt failed (to whom, when, why; never what the message is) and
// retry them. One operation behind the page and the API.

// failedNotice is one row of the list. To is the address the notice goes
// to (the recipient account's, for a push the device owner's): admins see
// addresses elsewhere too; nothing of any message is shown.
type failedNotice struct {
	ID        string    `json:"id"`
	Kind      string    `json:"kind"`
	Channel   string    `json:"channel"`
	To        string    `json:"to"`
	MessageID string    `json:"message_id,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	Attempts  int       `json:"attempts"`
	GivenUp   bool      `json:"given_up"`
	NextTry   time.Time `json:"next_attempt_at,omitzero"`
	Error     string    `json:"error"`
}

// failedNoticesShown bounds the list (the newest first).
const failedNoticesShown = 500

func (s *Server) noticeRoutes(h func(pattern string, p Perm, fn handler)) {
	h("GET /admin/notices", PermAdmin, s.noticesPage)
	h("POST /admin/notices/{id}/retry", PermAdmin, s.noticeRetrySubmit)
	h("GET /api/v1/admin/notices", PermAdmin, s.apiNotices)
	h("POST /api/v1/admin/notices/{id}/retry", PermAdmin, s.apiNoticeRetry)
	h("POST /sent/{id}/resend", PermOwn, s.resendSubmit)
	h("POST /api/v1/sent/{id}/resend", PermOwn, s.apiResend)
}

// failedNotices lists the failed rows of every notice channel. Onward
// mail (relay) is not a notice: its failure reaches its sender as a
// delivery-failure report, which is listed if it fails in turn.
func (s *Server) failedNotices(ctx context.Context) ([]failedNotice, error) {
	items, err := s.Store.FailedOutbox(ctx, failedNoticesShown)
	if err != nil {
		return nil, err
	}
	out := make([]failedNotice, 0, len(items))
	for _, it := range items {
		if it.Kind == notify.KindRelay {
			continue
		}
		f := failedNotice{ID: it.ID, Kind: it.Kind, Channel: string(notify.ChannelOf(it.Kind)), MessageID: it.MessageID,
			CreatedAt: it.CreatedAt, Attempts: it.Attempts, GivenUp: notify.GivenUp(it), Error: it.LastError}
		if !f.GivenUp {
			f.NextTry = it.NextAttemptAt
		}
		if f.To, err = s.noticeAddress(ctx, it); err != nil {
			return nil, err
		}
		out = append(out, f)
	}
	return out, nil
}

// noticeAddress is the account's address, or for a notice to no account
// (an alert, a report to an internal sender) the address in its sealed
// payload.
func (s *Server) noticeAddress(ctx context.Context, it store.OutboxItem) (string, error) {
	if it.UserID != "" {
		u, err := s.Store.UserByID(ctx, it.UserID)
		if errors.Is(err, store.ErrNotFound) {
			return "(account deleted)", nil
		}
		if err != nil {
			return "", err
		}
		return s.Identity.Email(u)
	}
	plain, err := s.Identity.Keys.OpenField(notify.PayloadPurpose(it.ID), it.Payload)
	if err != nil {
		return "", err
	}
	var n notify.Notice
	if err := json.Unmarshal(plain, &n); err != nil {
		return "", err
	}
	return n.To, nil
}

// errNotFailed: the row is not among the failed ones (sent meanwhile, or
// never failed, or onward mail).
var errNotFailed = errors.New("not a failed notice")

type failedNoticesOut struct {
	Notices []failedNotice `json:"notices"`
}

// opFailedNotices lists the failed notices (failedNotices).
func (s *Server) opFailedNotices(r *http.Request, _ *viewer, _ struct{}) (failedNoticesOut, error) {
	failed, err := s.failedNotices(r.Context())
	return failedNoticesOut{Notices: failed}, err
}

type noticeIn struct{ ID string }

type noticeQueued struct {
	Notice string `json:"notice"`
	Status string `json:"status"`
}

// opRetryNotice retries a failed notice (retryNotice); 404 if it is no
// longer failed.
func (s *Server) opRetryNotice(r *http.Request, _ *viewer, in noticeIn) (noticeQueued, error) {
	err := s.retryNotice(r, in.ID)
	if errors.Is(err, errNotFailed) {
		return noticeQueued{}, refused(http.StatusNotFound, "not_found", "That notice is no longer failed (sent or retried meanwhile).", err)
	}
	if err != nil {
		return noticeQueued{}, err
	}
	return noticeQueued{Notice: in.ID, Status: "queued"}, nil
}

// retryNotice makes a failed notice due now with fresh attempts, audited
// as notice.retry (object the outbox row, the message id beside it).
func (s *Server) retryNotice(r *http.Request, id string) error {
	ctx := r.Context()
	failed, err := s.failedNotices(ctx)
	if err != nil {
		return err
	}
	var f *failedNotice
	for i := range failed {
		if failed[i].ID == id {
			f = &failed[i]
		}
	}
	if f == nil {
		return errNotFailed
	}
	err = s.Store.RequeueOutbox(ctx, id, s.now())
	if errors.Is(err, store.ErrNotFound) {
		return errNotFailed
	}
	if err != nil {
		return err
	}
	// The dispatcher intake wakes after a commit sends it at once (it
	// would otherwise find it at its next poll, within seconds).
	if s.Intake != nil && s.Intake.Notifier != nil {
		s.Intake.Notifier.Kick()
	}
	details := map[string]string{"kind": f.Kind, "attempts": strconv.Itoa(f.Attempts), "error": f.Error}
	if f.MessageID != "" {
		details["message"] = f.MessageID
	}
	return s.audit(r, "notice.retry", "outbox", id, "ok", details)
}

var noticesNotices = map[string]string{
	"retried": "The notice will be sent again within a few seconds.",
}

func (s *Server) noticesPage(w http.ResponseWriter, r *http.Request, v *viewer) {
	d := s.data("Failed notices")
	d.Notice = doneNotice(r, noticesNotices)
	s.renderNotices(w, r, http.StatusOK, d)
}

func (s *Server) renderNotices(w http.ResponseWriter, r *http.Request, status int, d pageData) {
	out, err := s.opFailedNotices(r, viewerOf(r), struct{}{})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	d.Notices = out.Notices
	s.render(w, r, status, "admin_notices.html", d)
}

func (s *Server) noticeRetrySubmit(w http.ResponseWriter, r *http.Request, v *viewer) {
	if _, err := s.opRetryNotice(r, v, noticeIn{ID: r.PathValue("id")}); err != nil {
		s.pageRefused(w, r, err, s.data("Failed notices"), func(status int, d pageData) { s.renderNotices(w, r, status, d) })
		return
	}
	seeOther(w, r, "/admin/notices", "retried")
}

func (s *Server) apiNotices(w http.ResponseWriter, r *http.Request, v *viewer) {
	out, err := s.opFailedNotices(r, v, struct{}{})
	s.apiAnswer(w, r, http.StatusOK, out, err)
}

func (s *Server) apiNoticeRetry(w http.ResponseWriter, r *http.Request, v *viewer) {
	out, err := s.opRetryNotice(r, v, noticeIn{ID: r.PathValue("id")})
	s.apiAnswer(w, r, http.StatusOK, out, err)
}

// Re-sending a notice (issue 10.6): the sender of a message whose
// recipient has not opened it may have its notice sent again (a new claim
// link for a pending account, the sign-in link and pushes for an active
// one), at most once per resendInterval per message, counted from the
// message's latest notice row in the outbox (so the bound holds across
// nodes; two re-sends in the same instant may both pass).

// resendInterval spaces the notices of one message.
const resendInterval = 15 * time.Minute

// tooSoon says how long to wait before the next re-send.
type tooSoon struct{ wait time.Duration }

func (e *tooSoon) Error() string {
	return "a notice for this message went out less than 15 minutes ago"
}

// resendNotice queues the notice of message id again and records
// notice.resend in the same transaction. store.ErrNotFound: not the
// viewer's, or not a delivered, unexpired, unopened message.
func (s *Server) resendNotice(r *http.Request, v *viewer, id string) error {
	ctx, now := r.Context(), s.now()
	m, err := s.Store.GetMessage(ctx, id)
	if err != nil {
		return err
	}
	if m.SenderID != v.user.ID || m.State != store.StateDelivered || m.ReadAt != nil || !now.Before(m.ExpiresAt) {
		return store.ErrNotFound
	}
	last, err := s.Store.LastOutboxFor(ctx, m.ID, notify.KindNewMessage)
	if err != nil {
		return err
	}
	if wait := last.Add(resendInterval).Sub(now); wait > 0 {
		return &tooSoon{wait}
	}
	u, err := s.Store.UserByID(ctx, m.RecipientID)
	if err != nil {
		return err
	}
	rcpt, err := s.Identity.Email(u)
	if err != nil {
		return err
	}
	d, err := s.Intake.Notice(ctx, u, rcpt, *m, now)
	if err != nil {
		return err
	}
	b, err := audit.Prepare(ctx, s.Audit, audit.Entry{Actor: v.user.ID, IP: info(r).ip, Action: "notice.resend",
		ObjectType: "message", ObjectID: m.ID, Outcome: audit.OK, Details: map[string]string{"notices": strconv.Itoa(len(d.Outbox))}})
	if err != nil {
		return err
	}
	d.Audit = b.Func()
	if err := s.Store.Deliver(ctx, d); err != nil {
		return err
	}
	if s.Intake.Notifier != nil {
		s.Intake.Notifier.Kick()
	}
	return b.Committed(ctx)
}

type resendIn struct{ ID string }

type resendOut struct {
	Message string `json:"message"`
	Status  string `json:"status"`
}

// opResend sends a message's notice again for its sender (resendNotice):
// 429 with Retry-After within resendInterval of the last one, 404 for a
// message that is not the viewer's or not delivered, unopened, unexpired.
func (s *Server) opResend(r *http.Request, v *viewer, in resendIn) (resendOut, error) {
	var soon *tooSoon
	switch err := s.resendNotice(r, v, in.ID); {
	case errors.As(err, &soon):
		oe := refused(http.StatusTooManyRequests, "too_soon", "A notice for this message went out less than 15 minutes ago; try again later.", err)
		oe.RetryAfter = soon.wait.Truncate(time.Second) + time.Second
		return resendOut{}, oe
	case errors.Is(err, store.ErrNotFound):
		return resendOut{}, refused(http.StatusNotFound, "not_found",
			"That message's notice can't be sent again (it is not yours, or it was opened, recalled or has expired).", err)
	case err != nil:
		return resendOut{}, err
	}
	return resendOut{Message: in.ID, Status: "queued"}, nil
}

func (s *Server) resendSubmit(w http.ResponseWriter, r *http.Request, v *viewer) {
	if _, err := s.opResend(r, v, resendIn{ID: r.PathValue("id")}); err != nil {
		s.pageRefused(w, r, err, s.data("Sent messages"), func(status int, d pageData) { s.renderSentStatus(w, r, status, d) })
		return
	}
	seeOther(w, r, "/sent", "resent")
}

func (s *Server) apiResend(w http.ResponseWriter, r *http.Request, v *viewer) {
	out, err := s.opResend(r, v, resendIn{ID: r.PathValue("id")})
	s.apiAnswer(w, r, http.StatusOK, out, err)
}
