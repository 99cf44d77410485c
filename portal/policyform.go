package portal

import (
	"context"
	"errors"
	"regexp"
	"strconv"
	"strings"

	"github.com/phigate/phigate/policy"
)

// The policy editor keeps the admin's text when it is refused and marks
// the line (issue 13.5): the page shows the refused text again in the
// editor, and the lines around the first problem with that line marked.

// policyLine is one line of the refused text as the page lists it.
type policyLine struct {
	N    int
	Text string
	Bad  bool
}

var lineRe = regexp.MustCompile(`\bline (\d+):`)

// problemLine is the first line a policy error names (0: none).
func problemLine(err error) int {
	var ve *policy.ValidationError
	if errors.As(err, &ve) && ve.Line > 0 {
		return ve.Line
	}
	if err == nil {
		return 0
	}
	if m := lineRe.FindStringSubmatch(err.Error()); m != nil {
		n, _ := strconv.Atoi(m[1])
		return n
	}
	return 0
}

// aroundLine returns the lines of text from n-2 to n+2, line n marked.
func aroundLine(text string, n int) []policyLine {
	if n <= 0 {
		return nil
	}
	lines := strings.Split(strings.ReplaceAll(text, "\r\n", "\n"), "\n")
	var out []policyLine
	for i := max(n-2, 1); i <= min(n+2, len(lines)); i++ {
		out = append(out, policyLine{N: i, Text: lines[i-1], Bad: i == n})
	}
	return out
}

// authorNames turns the versions' author ids into addresses (issue 13.4).
func (s *Server) authorNames(ctx context.Context, versions []policyJSON) {
	n := s.namer(ctx)
	for i := range versions {
		versions[i].AuthorEmail = n.actor(versions[i].Author)
	}
}
