package portal

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	pcrypto "github.com/phigate/phigate/crypto"
	"github.com/phigate/phigate/message"
	"github.com/phigate/phigate/store"
)

type reasonError struct{}

func (*reasonError) Error() string {
	return fmt.Sprintf("write the reason for this emergency access (at least %d characters)", MinReasonLength)
}

// MinReasonLength keeps "x" from passing as a written reason.
const MinReasonLength = 15

// breakGlass opens any message with the escrow key for an admin or security
// officer in an emergency (HIPAA 164.312(a)(2)(ii)). Its audit entry alerts
// the security officer at once, with no PHI: who, which message id, when.
func (s *Server) breakGlass(r *http.Request, v *viewer, id, reason string, escrow *pcrypto.Key) (*opened, error) {
	if len([]rune(strings.TrimSpace(reason))) < MinReasonLength {
		return nil, &reasonError{}
	}
	m, err := s.Store.GetMessage(r.Context(), id)
	if err != nil {
		return nil, err
	}
	plain, sig, err := pcrypto.Open(&pcrypto.Sealed{KeyPackets: m.KeyPackets, Data: m.Body}, escrow, s.Gateway)
	if err != nil {
		return nil, refused(http.StatusBadRequest, "bad_request", "The message could not be opened with this escrow key.", err)
	}
	// The reason may itself name a patient: it is recorded sealed, and the
	// log and the alert carry only the record's id.
	bgID := store.NewID()
	sealed, err := s.Identity.Keys.SealField("break-glass:"+bgID, []byte(reason))
	if err != nil {
		return nil, err
	}
	if err := s.Store.AddBreakGlass(r.Context(), store.BreakGlass{ID: bgID, ActorID: v.user.ID, MessageID: id,
		At: s.now(), IP: info(r).ip, ReasonEnc: sealed}); err != nil {
		return nil, err
	}
	s.Log.WarnContext(r.Context(), "break-glass access", "by", v.user.ID, "role", v.user.Role, "message", id,
		"record", bgID, "ip", info(r).ip)
	if err := s.audit(r, "breakglass.open", "message", id, "ok", map[string]string{"reason": reason, "record": bgID}); err != nil {
		return nil, err
	}
	// The audit entry above raises the security officer's alert at once
	// (package alert): who, which message, when, from where; no PHI.
	return &opened{Meta: m, View: message.Parse(plain), Signature: sig}, nil
}

func (s *Server) breakGlassPage(w http.ResponseWriter, r *http.Request, v *viewer) {
	d := s.data("Emergency access")
	d.SignedIn = true
	d.ID = r.URL.Query().Get("message")
	s.render(w, r, http.StatusOK, "breakglass.html", d)
}

type breakGlassIn struct {
	MessageID string `json:"message_id"`
	Reason    string `json:"reason"`
	escrowIn
}

// opBreakGlass checks the escrow key, the written reason and the message,
// then opens it (breakGlass: recorded, audited and alerted first).
func (s *Server) opBreakGlass(r *http.Request, v *viewer, in breakGlassIn) (*opened, error) {
	escrow, err := s.unlockEscrow(in.escrowIn)
	if err != nil {
		return nil, err
	}
	o, err := s.breakGlass(r, v, strings.TrimSpace(in.MessageID), in.Reason, escrow)
	var short *reasonError
	switch {
	case errors.Is(err, store.ErrNotFound):
		oe := refused(http.StatusNotFound, "not_found", "No message has that id.", err)
		oe.Field = "message"
		return nil, oe
	case errors.As(err, &short):
		oe := refused(http.StatusBadRequest, "reason_required", "Write the reason for this emergency access (at least "+
			strconv.Itoa(MinReasonLength)+" characters).", err)
		oe.Field = "reason"
		return nil, oe
	}
	return o, err
}

func (s *Server) breakGlassSubmit(w http.ResponseWriter, r *http.Request, v *viewer) {
	in := breakGlassIn{MessageID: r.FormValue("message"), Reason: r.FormValue("reason"), escrowIn: escrowFromForm(r)}
	o, err := s.opBreakGlass(r, v, in)
	if err != nil {
		d := s.data("Emergency access")
		d.SignedIn, d.ID, d.Reason = true, in.MessageID, in.Reason
		// The escrow key and passphrase are never sent back to the page.
		d.Form = url.Values{"message": {in.MessageID}, "reason": {in.Reason}}
		s.pageRefused(w, r, err, d, func(status int, d pageData) { s.render(w, r, status, "breakglass.html", d) })
		return
	}
	d := s.data("Emergency access")
	d.SignedIn, d.BreakGlass = true, true
	d.ID, d.M, d.Signature, d.ExpiresAt = o.Meta.ID, o.View, o.Signature.String(), o.Meta.ExpiresAt
	// No frame: the HTML part would need a second escrow unlock; show the
	// text and list attachments only. No redirect either: the message is
	// shown once, to this request only.
	s.render(w, r, http.StatusOK, "message.html", d)
}

func (s *Server) apiBreakGlass(w http.ResponseWriter, r *http.Request, v *viewer) {
	var in breakGlassIn
	if !decodeJSON(w, r, &in) {
		return
	}
	o, err := s.opBreakGlass(r, v, in)
	if err != nil {
		s.apiError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"break_glass": true, "message": messageView(o)})
}
