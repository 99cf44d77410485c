package portal

import "time"

// disposedError: the viewer's own message was disposed of under the
// retention policy (issue 14.4). The person is told so in plain words;
// callers that only know errNoMessage treat it as that.
type disposedError struct{ at time.Time }

func (disposedError) Error() string { return "message disposed of under the retention policy" }

func (disposedError) Is(target error) bool { return target == errNoMessage }
