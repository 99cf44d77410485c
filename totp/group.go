package totp

import "strings"

// Grouped is the secret in groups of four characters, as people type it
// into an authenticator app from the screen (issue 13.6); apps ignore the
// spaces.
func (e *Enrolment) Grouped() string { return Group(e.Secret) }

// Group splits s into groups of four, separated by single spaces.
func Group(s string) string {
	var b strings.Builder
	for i, r := range s {
		if i > 0 && i%4 == 0 {
			b.WriteByte(' ')
		}
		b.WriteRune(r)
	}
	return b.String()
}
