package smtp

import (
	"bytes"
	"errors"
	"io"
)

var ErrTooLongLine = errors.New("smtp: too long a line in input stream")

// lineLimitReader reads from the underlying Reader but restricts
// line length of lines in input stream to a certain length.
//
// If line length exceeds the limit - Read returns ErrTooLongLine
type lineLimitReader struct {
	R         io.Reader
	LineLimit int

	curLineLength int
}

func (r *lineLimitReader) Read(b []byte) (int, error) {
	if r.curLineLength > r.LineLimit && r.LineLimit > 0 {
		return 0, ErrTooLongLine
	}

	n, err := r.R.Read(b)
	if err != nil {
		return n, err
	}

	if r.LineLimit == 0 {
		return n, nil
	}

	// phigate patch (PATCHES.md): upstream counted byte by byte: a LF sets
	// the count to 0, then every byte (the LF included) adds one and the
	// read fails as soon as the count passes the limit, leaving the count
	// there. This finds the LFs with bytes.IndexByte and adds whole runs,
	// with the same result and the same count left behind
	// (reference_impl_test.go, data_fast_test.go).
	limit, cur := r.LineLimit, r.curLineLength
	for p := b[:n]; ; {
		run := bytes.IndexByte(p, '\n')
		if run < 0 {
			run = len(p)
		}
		// run bytes other than LF, one at a time: cur+1, ..., cur+run.
		if run > 0 && cur+run > limit {
			// The first one past the limit fails: cur+1 if cur was
			// already at or past it, else limit+1.
			if cur < limit {
				cur = limit
			}
			r.curLineLength = cur + 1
			return 0, ErrTooLongLine
		}
		cur += run
		if run == len(p) {
			break
		}
		// The LF: the count restarts at 1.
		cur = 1
		if cur > limit {
			r.curLineLength = cur
			return 0, ErrTooLongLine
		}
		p = p[run+1:]
	}
	r.curLineLength = cur
	return n, nil
}
