package audit

import "context"

// Recorder is what the rest of phigate writes the trail through (a *Trail,
// or the gateway's fan-out that also feeds alerts and metrics).
type Recorder interface {
	Record(ctx context.Context, e Entry) error
}

// Discard records nothing (tests of single packages).
type Discard struct{}

func (Discard) Record(context.Context, Entry) error { return nil }
