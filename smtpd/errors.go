package smtpd

import (
	"fmt"

	"github.com/emersion/go-smtp"
	"github.com/phigate/phigate/intake"
)

// Error is the one error type at the SMTP session boundary. Policy refusals
// carry a reason the client sees; our own faults carry a Cause that is only
// logged, while the client gets a generic text and the correlation id.
type Error struct {
	Code     int
	Enhanced smtp.EnhancedCode
	Message  string // shown to the client
	Cause    error  // logged, never shown
	Fault    bool   // our fault (4xx, generic text)
}

func (e *Error) Error() string {
	if e.Cause != nil {
		return fmt.Sprintf("%d %d.%d.%d %s: %v", e.Code, e.Enhanced[0], e.Enhanced[1], e.Enhanced[2], e.Message, e.Cause)
	}
	return fmt.Sprintf("%d %d.%d.%d %s", e.Code, e.Enhanced[0], e.Enhanced[1], e.Enhanced[2], e.Message)
}

func (e *Error) Unwrap() error { return e.Cause }

// reply converts e to what go-smtp sends. go-smtp recognises only an
// unwrapped *smtp.SMTPError; anything else goes out as 554 with its text
// (LIBRARY-NOTES), so nothing else may leave a session method.
func (e *Error) reply(cid string) *smtp.SMTPError {
	msg := e.Message
	if e.Fault {
		msg = fmt.Sprintf("%s (ref %s)", msg, cid)
	}
	return &smtp.SMTPError{Code: e.Code, EnhancedCode: e.Enhanced, Message: msg}
}

func refuse(code int, enh smtp.EnhancedCode, msg string) *Error {
	return &Error{Code: code, Enhanced: enh, Message: msg}
}

// fault is a temporary failure on our side: the client keeps the message and
// retries (RFC 5321 4.2.5), so nothing is lost.
func fault(cause error) *Error {
	return &Error{Code: 451, Enhanced: smtp.EnhancedCode{4, 3, 0},
		Message: "Temporary local problem, please try again later", Cause: cause, Fault: true}
}

// Refusals, with the reply codes RFC 5321, 3207, 4954 and 5248 assign.
var (
	errNeedTLS        = refuse(530, smtp.EnhancedCode{5, 7, 0}, "Must issue a STARTTLS command first")
	errNeedAuth       = refuse(530, smtp.EnhancedCode{5, 7, 0}, "Authentication required")
	errSenderNotOwned = refuse(553, smtp.EnhancedCode{5, 7, 1}, "Sender address is not yours: use the address of the account you authenticated as")
	errNullSender     = refuse(553, smtp.EnhancedCode{5, 7, 1}, "A sender address is required for submission")
	errBadRcpt        = refuse(501, smtp.EnhancedCode{5, 1, 3}, "Bad recipient address syntax")
	errTooManyRcpts   = refuse(452, smtp.EnhancedCode{4, 5, 3}, "Too many recipients; send the rest in another message")
	errLineTooLong    = refuse(500, smtp.EnhancedCode{5, 6, 0}, "Line too long: RFC 5321 4.5.3.1.6 allows 998 characters per line; use a transfer encoding")
	errAuthFailed     = refuse(535, smtp.EnhancedCode{5, 7, 8}, "Authentication failed: use an app password, not your portal password")
	errDisabled       = refuse(535, smtp.EnhancedCode{5, 7, 8}, "This account is disabled")
	errAuthzMismatch  = refuse(535, smtp.EnhancedCode{5, 7, 8}, "Authentication failed: authorization identity must be empty or equal the user name")
)

// policyRefusal is the reply for a data-sharing policy reject: the rule's
// code and reason (RFC 3463 5.7.1, delivery not authorized).
func policyRefusal(r *intake.Rejected) *Error {
	if r.Enhanced != [3]int{} { // the sending limits' own codes (intake/limits.go)
		return refuse(r.Code, smtp.EnhancedCode(r.Enhanced), r.Reason)
	}
	return refuse(r.Code, smtp.EnhancedCode{5, 7, 1}, r.Reason)
}

// refusalLabel is the metrics reason of a refusal: a small fixed set.
func refusalLabel(stage string, e *Error) string {
	switch {
	case e.Fault:
		return "fault"
	case e == errNeedTLS:
		return "tls"
	case stage == "auth" || e == errNeedAuth || e == errDisabled:
		return "auth"
	case e == errSenderNotOwned || e == errNullSender:
		return "sender"
	case e == errTooManyRcpts || e == errBadRcpt:
		return "recipients"
	case e == errLineTooLong:
		return "line"
	case e.Code == 552:
		return "size"
	case e.Enhanced == smtp.EnhancedCode{5, 7, 1}:
		return "policy"
	}
	return "other"
}
