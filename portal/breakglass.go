package portal

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	pcrypto "github.com/phigate/phigate/crypto"
	"github.com/phigate/phigate/identity"
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
		return nil, err
	}
	// The reason may itself name a patient: it is recorded sealed, and the
	// log and the alert carry only the record's id.
	bgID := identity.NewID()
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

func (s *Server) breakGlassSubmit(w http.ResponseWriter, r *http.Request, v *viewer) {
	d := s.data("Emergency access")
	d.SignedIn = true
	escrow, err := s.escrowFromForm(r)
	var o *opened
	if err == nil {
		o, err = s.breakGlass(r, v, strings.TrimSpace(r.FormValue("message")), r.FormValue("reason"), escrow)
	}
	if err != nil {
		d.ID, d.Reason = r.FormValue("message"), r.FormValue("reason")
		switch {
		case errors.Is(err, store.ErrNotFound):
			d.Error = "No message has that id."
		default:
			d.Error = reason(err)
		}
		s.render(w, r, http.StatusBadRequest, "breakglass.html", d)
		return
	}
	d.Title, d.BreakGlass = "Emergency access", true
	d.ID, d.M, d.Signature, d.ExpiresAt = o.Meta.ID, o.View, o.Signature.String(), o.Meta.ExpiresAt
	// No frame: the HTML part would need a second escrow unlock; show the
	// text and list attachments only.
	s.render(w, r, http.StatusOK, "message.html", d)
}

func (s *Server) apiBreakGlass(w http.ResponseWriter, r *http.Request, v *viewer) {
	var req struct {
		MessageID  string `json:"message_id"`
		Reason     string `json:"reason"`
		EscrowKey  string `json:"escrow_key"`
		Passphrase string `json:"passphrase"`
	}
	if !decodeJSON(w, r, &req) {
		return
	}
	escrow := s.apiUnlockEscrow(w, req.EscrowKey, req.Passphrase)
	if escrow == nil {
		return
	}
	o, err := s.breakGlass(r, v, req.MessageID, req.Reason, escrow)
	var short *reasonError
	switch {
	case errors.Is(err, store.ErrNotFound):
		writeJSONError(w, http.StatusNotFound, "not_found", "no such message")
		return
	case errors.As(err, &short):
		writeJSONError(w, http.StatusBadRequest, "reason_required", err.Error())
		return
	case err != nil:
		s.apiFail(w, r, err)
		return
	}
	mj := messageView(o)
	writeJSON(w, http.StatusOK, map[string]any{"break_glass": true, "message": mj})
}
