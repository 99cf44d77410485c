package compliance

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/phigate/phigate/web"
)

// WriteJSON writes the report as one indented JSON document.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteText writes the report for a person: a summary line, then each
// safeguard with its setting and checks.
func (r *Report) WriteText(w io.Writer) error {
	var b strings.Builder
	verdict := "PASS: every check passed"
	if !r.OK {
		verdict = "FAIL: " + web.Count(r.Failed, "check") + " failed"
	}
	fmt.Fprintf(&b, "phigate compliance report, %s\n%s\n", r.Generated.Format(time.RFC3339), verdict)
	for _, s := range r.Safeguards {
		fmt.Fprintf(&b, "\n%s %s\n  does:    %s\n", s.Rule, s.Title, s.Does)
		if s.Setting != "" {
			fmt.Fprintf(&b, "  setting: %s = %s\n", s.Setting, s.Value)
		}
		for _, c := range s.Checks {
			fmt.Fprintf(&b, "  [%s] %s: %s", c.Status, c.Name, c.Detail)
			if c.At != nil {
				fmt.Fprintf(&b, " (at %s)", c.At.Format(time.RFC3339))
			}
			b.WriteByte('\n')
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}
