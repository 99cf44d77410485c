package detect

import (
	"strings"
	"testing"
	"time"
)

// TestAdversarialLinear feeds 1 MB of repetitive text built to make each
// detector try hard (keywords packed closer than their windows, endless
// digit groups, half-formed codes). Linear work takes tens of
// milliseconds; the limit is loose so a loaded machine does not fail it,
// while quadratic work (minutes) would.
func TestAdversarialLinear(t *testing.T) {
	s := newTestScanner(t, Config{MRNPattern: `[A-Z]{2}\d{6}`, Keywords: []string{"HIV", "breast cancer", "#x"}})
	for _, unit := range []string{
		"DOB ", "d ", "DOB 1 ", "DOB 01/0", "born January ", "1 ", "11 ", "4111 ", "4111-", "A11 ", "dx A11 ",
		"E11.9 ", "1", "(212) ", "+1", "1EG4-", "ssn 512345678 ", "breast ", "#x", "hiv ", "é ", "\u00a0",
		"DOB 5th-", "Date of birth: ",
	} {
		text := strings.Repeat(unit, (1<<20)/len(unit))
		t0 := time.Now()
		s.ScanText(text)
		if d := time.Since(t0); d > 3*time.Second {
			t.Errorf("%q x %d took %v", unit, len(text)/len(unit), d)
		}
	}
}
