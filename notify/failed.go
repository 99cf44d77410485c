package notify

import "github.com/phigate/phigate/store"

// GivenUp reports whether the dispatcher gave up on the row for good (a
// permanent error or MaxAttempts): only an admin's retry sends it now.
func GivenUp(it store.OutboxItem) bool { return !it.NextAttemptAt.Before(never) }
