package smtpd

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// faultLog writes repeated identical log lines at a bounded rate. A full
// disk or a dead database makes every connection fail the same way: written
// one line each, that was ~66,000 lines in 45 s, which hides everything
// else and fills the disk further. The first line of a kind in each
// interval is written; later ones are counted, and the count goes out as
// "repeated=N" with the next line of that kind.
type faultLog struct {
	log   *slog.Logger
	every time.Duration
	now   func() time.Time

	mu    sync.Mutex
	kinds map[string]*logKind
}

type logKind struct {
	last       time.Time
	suppressed int
}

// maxLogKinds bounds the kinds tracked; when it is reached the table starts
// again (a flood of distinct kinds is then logged at most once per kind).
const maxLogKinds = 1024

func newFaultLog(log *slog.Logger, every time.Duration) *faultLog {
	return &faultLog{log: log, every: every, now: time.Now, kinds: map[string]*logKind{}}
}

// allow decides whether a line of kind goes out now and how many of its
// kind were held back since the last one that did.
func (f *faultLog) allow(kind string) (ok bool, repeated int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := f.now()
	k := f.kinds[kind]
	if k == nil {
		if len(f.kinds) >= maxLogKinds {
			clear(f.kinds)
		}
		f.kinds[kind] = &logKind{last: now}
		return true, 0
	}
	if now.Sub(k.last) < f.every {
		k.suppressed++
		return false, 0
	}
	repeated, k.suppressed, k.last = k.suppressed, 0, now
	return true, repeated
}

// logAt writes msg at level unless a line of the same kind went out less
// than the interval ago. kind names what makes lines identical (the
// message plus the attributes that matter, never an address).
func (f *faultLog) logAt(ctx context.Context, level slog.Level, kind, msg string, args ...any) {
	ok, repeated := f.allow(kind)
	if !ok {
		return
	}
	if repeated > 0 {
		args = append(args, "repeated", repeated)
	}
	f.log.Log(ctx, level, msg, args...)
}

func (f *faultLog) warn(msg string, args ...any) {
	f.logAt(context.Background(), slog.LevelWarn, msg, msg, args...)
}
