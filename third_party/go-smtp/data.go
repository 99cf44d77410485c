package smtp

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
)

type EnhancedCode [3]int

// SMTPError specifies the error code, enhanced error code (if any) and
// message returned by the server.
type SMTPError struct {
	Code         int
	EnhancedCode EnhancedCode
	Message      string
}

// NoEnhancedCode is used to indicate that enhanced error code should not be
// included in response.
//
// Note that RFC 2034 requires an enhanced code to be included in all 2xx, 4xx
// and 5xx responses. This constant is exported for use by extensions, you
// should probably use EnhancedCodeNotSet instead.
var NoEnhancedCode = EnhancedCode{-1, -1, -1}

// EnhancedCodeNotSet is a nil value of EnhancedCode field in SMTPError, used
// to indicate that backend failed to provide enhanced status code. X.0.0 will
// be used (X is derived from error code).
var EnhancedCodeNotSet = EnhancedCode{0, 0, 0}

func (err *SMTPError) Error() string {
	s := fmt.Sprintf("SMTP error %03d", err.Code)
	if err.Message != "" {
		s += ": " + err.Message
	}
	return s
}

func (err *SMTPError) Temporary() bool {
	return err.Code/100 == 4
}

var ErrDataTooLarge = &SMTPError{
	Code:         552,
	EnhancedCode: EnhancedCode{5, 3, 4},
	Message:      "Maximum message size exceeded",
}

type dataReader struct {
	r     *bufio.Reader
	state int

	limited bool
	n       int64 // Maximum bytes remaining
}

func newDataReader(c *Conn) *dataReader {
	dr := &dataReader{
		r: c.text.R,
	}

	if c.server.MaxMessageBytes > 0 {
		dr.limited = true
		dr.n = int64(c.server.MaxMessageBytes)
	}

	return dr
}

// States of dataReader. The state machine is the one of net/textproto's
// dotReader with one modification: CRLF is not rewritten to LF.
const (
	stateBeginLine = iota // beginning of line; initial state; must be zero
	stateDot              // read . at beginning of line
	stateDotCR            // read .\r at beginning of line
	stateCR               // read \r (possibly at end of line)
	stateData             // reading data in middle of line
	stateEOF              // reached .\r\n end marker line
)

// Read elides leading dots and detects the End-of-Data (<CR><LF>.<CR><LF>)
// line.
//
// phigate patch (PATCHES.md): upstream ran every byte through the state
// machine with bufio.Reader.ReadByte. This version works on the bytes
// already buffered: runs of ordinary bytes in the middle of a line are found
// with bytes.IndexByte and copied at once, and only the bytes around line
// starts and CRs take the byte-wise path. Its output, errors, state and the
// input it consumes are exactly upstream's, for every input and every way
// the input is split into reads (reference_impl_test.go keeps upstream's
// code; data_fast_test.go compares the two, also as a fuzz target). In
// particular it never consumes a byte past the end marker, so pipelined
// commands after DATA are read as before, and it reads from the connection
// only when upstream would have: when it needs another byte and none is
// buffered.
func (r *dataReader) Read(b []byte) (n int, err error) {
	if r.limited {
		if r.n <= 0 {
			return 0, ErrDataTooLarge
		}
		if int64(len(b)) > r.n {
			b = b[0:r.n]
		}
	}

	for n < len(b) && r.state != stateEOF {
		if r.r.Buffered() == 0 {
			// Upstream's ReadByte on an empty buffer, as it was: fill the
			// buffer (one read of the connection, retried on empty reads)
			// or return the pending error. The byte goes back at once.
			if _, err = r.r.ReadByte(); err != nil {
				if err == io.EOF {
					err = io.ErrUnexpectedEOF
				}
				break
			}
			r.r.UnreadByte()
		}
		// All of buf is buffered: Peek neither reads nor fails here.
		buf, _ := r.r.Peek(r.r.Buffered())
		i := 0 // bytes of buf consumed
		for i < len(buf) && n < len(b) && r.state != stateEOF {
			if r.state == stateData {
				// Every byte is copied; a CR ends the run.
				run := buf[i:]
				if len(run) > len(b)-n {
					run = run[:len(b)-n]
				}
				if j := bytes.IndexByte(run, '\r'); j >= 0 {
					run = run[:j+1]
					r.state = stateCR
				}
				n += copy(b[n:], run)
				i += len(run)
				continue
			}
			c := buf[i]
			i++
			switch r.state {
			case stateBeginLine:
				if c == '.' {
					r.state = stateDot
					continue
				}
				if c == '\r' {
					r.state = stateCR
					break
				}
				r.state = stateData
			case stateDot:
				if c == '\r' {
					r.state = stateDotCR
					continue
				}
				r.state = stateData
			case stateDotCR:
				if c == '\n' {
					r.state = stateEOF
					continue
				}
				r.state = stateData
			case stateCR:
				if c == '\n' {
					r.state = stateBeginLine
					break
				}
				r.state = stateData
			}
			b[n] = c
			n++
		}
		// Consume what was used, the last byte with ReadByte so that the
		// bufio.Reader is left as upstream's ReadByte calls left it (for
		// UnreadByte). i > 0: the loop above ran at least once.
		r.r.Discard(i - 1)
		r.r.ReadByte()
	}
	if err == nil && r.state == stateEOF {
		err = io.EOF
	}

	if r.limited {
		r.n -= int64(n)
	}
	return
}
