// Package detect finds protected health information (PHI) and other
// sensitive data in mail: the clinical DLP detectors of issue #4.
//
// Every detector validates what it finds rather than trusting a bare regular
// expression: SSNs are checked against the ranges SSA never issues, NPIs and
// card numbers against their check digits, dates of birth against the
// calendar, and the shapes that collide with ordinary text (bare 9-digit
// runs, bare 3-character ICD-10 codes) are only counted next to a keyword.
// The rules and the false-positive trade-offs are written next to each
// detector in detectors.go.
//
// A scan returns Counts: how many times each detector fired. It never
// returns, stores or logs the matched values, so a decision built on it can
// be logged without carrying PHI.
//
// A Scanner is immutable after New and safe for concurrent use.
package detect

import (
	"fmt"
	"regexp"
	"sort"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// Names of the built-in detectors (stable identifiers used in policy files).
const (
	SSN     = "ssn"
	NPI     = "npi"
	MBI     = "mbi"
	ICD10   = "icd10"
	DOB     = "dob"
	MRN     = "mrn"
	Card    = "card"
	Phone   = "phone"
	Keyword = "keyword"
)

var names = []string{SSN, NPI, MBI, ICD10, DOB, MRN, Card, Phone, Keyword}

// Names lists all detector names (for validating policy files), in a stable
// order. The slice is the caller's to keep.
func Names() []string { return append([]string(nil), names...) }

// Config is the administrator's part of the detectors.
type Config struct {
	// MRNPattern is an RE2 regular expression for the organisation's
	// medical record numbers, e.g. `MRN[:# ]*\d{7}` or `\b[A-Z]{2}\d{8}`.
	// Empty turns the MRN detector off. A match counts only when it is not
	// part of a longer word: if the match begins (ends) with a letter or
	// digit, the character before (after) it must not be one.
	MRNPattern string
	// Keywords is the admin keyword list: case-insensitive, whole words or
	// phrases (Unicode letters and digits count as word characters; any run
	// of white space in a phrase matches any run of white space in text).
	Keywords []string
}

// Counts maps a detector name to the number of matches (occurrences, not
// distinct values: the same SSN written twice counts 2). Detectors that did
// not fire are absent. It never holds the matched values.
type Counts map[string]int

// add adds o into c.
func (c Counts) add(o Counts) {
	for k, v := range o {
		c[k] += v
	}
}

// max keeps, per detector, the larger of c and o.
func (c Counts) max(o Counts) {
	for k, v := range o {
		if v > c[k] {
			c[k] = v
		}
	}
}

// Scanner holds the compiled detectors.
type Scanner struct {
	mrn      *regexp.Regexp // nil: MRN detector off
	keywords *keywordSet    // nil: no keywords
	now      func() time.Time
}

// maxKeywords and maxKeywordLen bound the admin list.
const (
	maxKeywords   = 5000
	maxKeywordLen = 200
)

// New compiles cfg. The error names the bad setting.
func New(cfg Config) (*Scanner, error) {
	s := &Scanner{now: time.Now}
	if p := cfg.MRNPattern; strings.TrimSpace(p) != "" {
		re, err := regexp.Compile(p)
		if err != nil {
			return nil, fmt.Errorf("detect: mrn_pattern: invalid regular expression: %w", err)
		}
		if re.MatchString("") {
			return nil, fmt.Errorf("detect: mrn_pattern %q matches the empty string", p)
		}
		s.mrn = re
	}
	if len(cfg.Keywords) > maxKeywords {
		return nil, fmt.Errorf("detect: keywords: %d entries, at most %d allowed", len(cfg.Keywords), maxKeywords)
	}
	ks := &keywordSet{byFirst: map[string][]string{}}
	seen := map[string]bool{}
	for i, kw := range cfg.Keywords {
		if strings.TrimSpace(kw) == "" {
			return nil, fmt.Errorf("detect: keywords[%d] is empty", i)
		}
		if len(kw) > maxKeywordLen {
			return nil, fmt.Errorf("detect: keywords[%d] is longer than %d bytes", i, maxKeywordLen)
		}
		if !utf8.ValidString(kw) {
			return nil, fmt.Errorf("detect: keywords[%d] is not valid UTF-8", i)
		}
		k := foldKeywordText(normalize(kw))
		k = strings.TrimSpace(k)
		if k == "" {
			return nil, fmt.Errorf("detect: keywords[%d] is empty", i)
		}
		if seen[k] {
			continue
		}
		seen[k] = true
		end := 0
		for end < len(k) {
			r, n := utf8.DecodeRuneInString(k[end:])
			if !isWord(r) {
				break
			}
			end += n
		}
		if end == 0 {
			ks.other = append(ks.other, k)
		} else {
			ks.byFirst[k[:end]] = append(ks.byFirst[k[:end]], k)
			ks.first[k[0]] = true
		}
	}
	for _, l := range ks.byFirst {
		// Longest first, so "breast cancer" wins over "breast" at the same
		// place.
		sort.SliceStable(l, func(i, j int) bool { return len(l[i]) > len(l[j]) })
	}
	if len(seen) > 0 {
		s.keywords = ks
	}
	return s, nil
}

// ScanText runs every detector over text and returns the counts. Time is
// linear in len(text); ScanMessage bounds how much text a message can feed
// it.
func (s *Scanner) ScanText(text string) Counts {
	c := Counts{}
	s.scanInto(text, c)
	return c
}

func (s *Scanner) scanInto(text string, c Counts) {
	if text == "" {
		return
	}
	text = normalize(text)
	inc := func(name string, n int) {
		if n > 0 {
			c[name] += n
		}
	}
	runs := digitRuns(text)
	inc(SSN, countSSN(text, runs))
	inc(NPI, countNPI(text, runs))
	inc(MBI, countMBI(text, runs))
	inc(ICD10, countICD10(text, runs))
	inc(DOB, countDOB(text, s.now()))
	inc(Card, countCards(text, runs))
	inc(Phone, countPhones(text, runs))
	if s.mrn != nil {
		inc(MRN, countWordMatches(s.mrn, text))
	}
	if s.keywords != nil {
		inc(Keyword, s.keywords.count(text))
	}
}

// normalize maps the Unicode look-alikes that mail (HTML &nbsp;, word
// processors) puts between digits onto ASCII, and drops invisible
// characters, so "123&nbsp;45&#8209;6789" or a number with zero-width
// spaces in it is still seen. Only counts leave this package, so changing
// byte offsets is harmless.
func normalize(s string) string {
	ascii := true
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			ascii = false
			break
		}
	}
	if ascii {
		return s
	}
	return strings.Map(func(r rune) rune {
		switch r {
		case '\u00a0', '\u2007', '\u202f', '\u2009', '\u2002', '\u2003', '\u2004', '\u2005', '\u2006', '\u2008', '\u200a', '\u3000':
			return ' '
		case '\u2010', '\u2011', '\u2012', '\u2013', '\u2212', '\ufe63', '\uff0d':
			return '-'
		case '\u00ad', '\u200b', '\u200c', '\u200d', '\u2060', '\ufeff':
			return -1
		}
		if r >= '\uff10' && r <= '\uff19' { // full-width digits
			return '0' + (r - '\uff10')
		}
		return r
	}, s)
}

// isWord reports whether r is a word character: a Unicode letter or digit,
// or '_'.
func isWord(r rune) bool {
	return r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r)
}

func isDigit(b byte) bool { return '0' <= b && b <= '9' }

// leftOK reports whether a token starting at s[i] is not the tail of a
// longer word or number: the character before is no word character, and
// not a '-' or '.' joined to a digit ("1-123-45-6789", "3.123456789").
func leftOK(s string, i int) bool {
	if i <= 0 {
		return true
	}
	r, n := utf8.DecodeLastRuneInString(s[:i])
	if isWord(r) {
		return false
	}
	if (r == '-' || r == '.') && i-n > 0 && isDigit(s[i-n-1]) {
		return false
	}
	return true
}

// rightOK is leftOK for the end of a token at s[j-1].
func rightOK(s string, j int) bool {
	if j >= len(s) {
		return true
	}
	r, n := utf8.DecodeRuneInString(s[j:])
	if isWord(r) {
		return false
	}
	if (r == '-' || r == '.') && j+n < len(s) && isDigit(s[j+n]) {
		return false
	}
	return true
}

// countWordMatches counts matches of re that are not inside a longer word:
// where a match begins (ends) with a word character, the character before
// (after) it must not be one. Used for the admin-set MRN pattern.
func countWordMatches(re *regexp.Regexp, s string) int {
	n := 0
	for _, m := range re.FindAllStringIndex(s, -1) {
		i, j := m[0], m[1]
		if i == j {
			continue
		}
		first, _ := utf8.DecodeRuneInString(s[i:j])
		last, _ := utf8.DecodeLastRuneInString(s[i:j])
		if isWord(first) && i > 0 {
			if r, _ := utf8.DecodeLastRuneInString(s[:i]); isWord(r) {
				continue
			}
		}
		if isWord(last) && j < len(s) {
			if r, _ := utf8.DecodeRuneInString(s[j:]); isWord(r) {
				continue
			}
		}
		n++
	}
	return n
}

// keywordSet matches the admin keyword list in one pass over the words of
// the text, whatever the list's length: keywords are indexed by their
// first word.
type keywordSet struct {
	byFirst map[string][]string // first word -> keywords starting with it, longest first
	first   [256]bool           // first bytes of the byFirst keys
	other   []string            // keywords starting with a non-word character
}

// foldKeywordText is the form both keywords and text are compared in:
// NFC, lower case (Unicode), every run of white space one ' '.
func foldKeywordText(s string) string {
	ascii := true
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			ascii = false
			break
		}
	}
	out := make([]byte, 0, len(s))
	space := false
	if ascii {
		for i := 0; i < len(s); i++ {
			b := s[i]
			if isSpace(b) {
				if !space {
					out = append(out, ' ')
				}
				space = true
				continue
			}
			out = append(out, lower(b))
			space = false
		}
		return string(out)
	}
	s = strings.ToLower(norm.NFC.String(s))
	for _, r := range s {
		if unicode.IsSpace(r) {
			if !space {
				out = append(out, ' ')
			}
			space = true
			continue
		}
		out = utf8.AppendRune(out, r)
		space = false
	}
	return string(out)
}

// wordAt reports whether the rune at s[i] is a word character, and its
// size.
func wordAt(s string, i int) (bool, int) {
	if b := s[i]; b < utf8.RuneSelf {
		return b == '_' || isAlnum(b), 1
	}
	r, n := utf8.DecodeRuneInString(s[i:])
	return isWord(r), n
}

// count counts keyword occurrences in text: whole words or phrases, case-
// insensitive, leftmost-longest and not overlapping.
func (ks *keywordSet) count(text string) int {
	low := foldKeywordText(text)
	n := 0
	endOK := func(i int, kw string) bool {
		last, _ := utf8.DecodeLastRuneInString(kw)
		if !isWord(last) || i >= len(low) {
			return true
		}
		w, _ := wordAt(low, i)
		return !w
	}
	for i := 0; i < len(low); {
		w, size := wordAt(low, i)
		if !w {
			i += size
			continue
		}
		j := i + size
		for j < len(low) {
			w, size := wordAt(low, j)
			if !w {
				break
			}
			j += size
		}
		matched := false
		if !ks.first[low[i]] {
			i = j
			continue
		}
		for _, kw := range ks.byFirst[low[i:j]] {
			if strings.HasPrefix(low[i:], kw) && endOK(i+len(kw), kw) {
				n++
				i += len(kw)
				matched = true
				break
			}
		}
		if !matched {
			i = j
		}
	}
	for _, kw := range ks.other {
		for i := 0; ; {
			k := strings.Index(low[i:], kw)
			if k < 0 {
				break
			}
			if endOK(i+k+len(kw), kw) {
				n++
				i += k + len(kw)
			} else {
				i += k + 1
			}
		}
	}
	return n
}
