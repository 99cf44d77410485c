package smtpd

import (
	"errors"
	"fmt"
	"syscall"

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
// retries (RFC 5321 4.2.5), so nothing is lost. A full disk is told as such
// (452 4.3.1, RFC 5321 4.2.2 and RFC 3463 X.3.1), so the client's admin
// knows it is not their message.
func fault(cause error) *Error {
	if diskFull(cause) {
		return &Error{Code: 452, Enhanced: smtp.EnhancedCode{4, 3, 1},
			Message: "Insufficient system storage, please try again later", Cause: cause, Fault: true}
	}
	return &Error{Code: 451, Enhanced: smtp.EnhancedCode{4, 3, 0},
		Message: "Temporary local problem, please try again later", Cause: cause, Fault: true}
}

// diskFull recognises "no space left" from the file system (ENOSPC,
// EDQUOT), from SQLite (SQLITE_FULL, result code 13, also as the low byte
// of an extended code) and from PostgreSQL (SQLSTATE 53100 disk_full),
// without importing the drivers: both expose their codes by method.
func diskFull(err error) bool {
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return true
	}
	var lite interface{ Code() int }
	if errors.As(err, &lite) && lite.Code()&0xff == sqliteFull {
		return true
	}
	var pg interface{ SQLState() string }
	return errors.As(err, &pg) && pg.SQLState() == "53100"
}

const sqliteFull = 13 // SQLITE_FULL

// Replies that end the connection (the session drops it after sending).
var (
	// RFC 5321 4.5.3.2: a server may close a connection that exceeds its
	// timeout, and 421 says it does.
	errTimedOut = refuse(421, smtp.EnhancedCode{4, 4, 2}, "Idle timeout, closing connection")
	// Failed AUTH attempts from one address are throttled (RFC 4954 4:
	// servers should limit them); 421 4.7.0 tells the client to go away.
	errAuthThrottled = refuse(421, smtp.EnhancedCode{4, 7, 0}, "Too many failed authentication attempts, closing connection; try again later")
)

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
	// RFC 5321 4.1.1.1: the EHLO/HELO argument is a domain or an address
	// literal.
	errBadHelo = refuse(501, smtp.EnhancedCode{5, 5, 2}, "Bad EHLO/HELO argument: give your host's domain name or an address literal such as [192.0.2.1] (RFC 5321 4.1.1.1)")
	// Source routes and quoting tricks (%-hack, bang paths, quoted local
	// parts, address literals) are refused for every recipient, so that no
	// form can route past the policy (RFC 5321 3.6.1, 4.1.2).
	errRcptForm = refuse(553, smtp.EnhancedCode{5, 1, 3}, "Recipient address form not accepted: no %, !, quoted local parts or address literals; use a plain name@domain address")
	// RFC 5321 2.3.8: CR and LF only as CRLF; a bare one is how messages
	// are smuggled past other servers' DATA framing.
	errBareNewline = refuse(550, smtp.EnhancedCode{5, 6, 0}, "Message refused: it contains a bare CR or LF; every line must end with CRLF (RFC 5321 2.3.8)")
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
	case e == errTimedOut:
		return "other"
	case e == errAuthThrottled:
		return "auth"
	case e == errRcptForm:
		return "recipients"
	case e == errBareNewline:
		return "line"
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
