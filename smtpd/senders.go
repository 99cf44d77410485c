package smtpd

import (
	"errors"

	"github.com/phigate/phigate/intake"
)

// The per-account sending limits (issue 8.5) at the session boundary: the
// checks are intake's; this file only calls them at MAIL, RCPT and the end
// of a transaction, and maps their refusals to replies.

// beginTxn takes the account's transaction slot and hour budget at MAIL.
func (s *session) beginTxn() error {
	t, err := s.b.Intake.Begin(s.ctx, s.user, s.size)
	if err != nil {
		return s.refusal("mail", err)
	}
	s.ticket = t
	return nil
}

// checkRcptSize refuses the recipient that takes a declared SIZE times the
// recipients over the transaction bytes.
func (s *session) checkRcptSize() error {
	if err := s.b.Intake.CheckRecipients(s.size, len(s.to)+1); err != nil {
		return s.refusal("rcpt", err)
	}
	return nil
}

// endTxn ends the transaction's ticket: sent counts its message against
// the hour. Safe to call more than once (DATA, then RSET or disconnect).
func (s *session) endTxn(sent bool) {
	if err := s.ticket.End(s.ctx, sent); err != nil {
		s.b.Log.ErrorContext(s.ctx, "sending limits: ending a transaction", "err", err)
	}
	if !sent {
		s.ticket = nil
	}
}

// refusal maps an intake error to the reply: its own code for a *Rejected,
// a generic fault otherwise.
func (s *session) refusal(stage string, err error) error {
	var rj *intake.Rejected
	if errors.As(err, &rj) {
		return s.fail(stage, policyRefusal(rj))
	}
	return s.fail(stage, fault(err))
}
