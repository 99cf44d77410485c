package detect

import (
	"strings"
	"time"
)

// The built-in detectors are hand-written over one list of the text's ASCII
// digit runs, not regular expressions: Go's regexp runs unanchored patterns
// at a few MB/s, and a message may bring 10 MB of text. Every candidate
// must pass leftOK/rightOK (it is not part of a longer word or number) and
// then the detector's validation. Text has been through normalize, so
// separators are ASCII.

// run is a maximal run of ASCII digits, s[start:end].
type run struct{ start, end int }

func (r run) len() int { return r.end - r.start }

func digitRuns(s string) []run {
	var runs []run
	for i := 0; i < len(s); i++ {
		if isDigit(s[i]) {
			j := i + 1
			for j < len(s) && isDigit(s[j]) {
				j++
			}
			runs = append(runs, run{i, j})
			i = j
		}
	}
	return runs
}

// gap returns the text between runs k and k+1, or "\x00" if there is no
// run k+1.
func gap(s string, runs []run, k int) string {
	if k+1 >= len(runs) {
		return "\x00"
	}
	return s[runs[k].end:runs[k+1].start]
}

// contextWindow is how far (in bytes) before a candidate a keyword may be
// for the detectors that need one, and how far after "DOB" a date may
// start.
const contextWindow = 40

func window(s string, i int) string {
	lo := i - contextWindow
	if lo < 0 {
		lo = 0
	}
	return s[lo:i]
}

func isAlnum(b byte) bool { return isDigit(b) || 'a' <= b|0x20 && b|0x20 <= 'z' }
func lower(b byte) byte {
	if 'A' <= b && b <= 'Z' {
		return b | 0x20
	}
	return b
}

// hasPrefixFold reports whether s starts with kw, ASCII case-insensitively;
// a ' ' in kw matches one or more white-space bytes. It returns the length
// of s matched.
func hasPrefixFold(s, kw string) (int, bool) {
	i := 0
	for k := 0; k < len(kw); k++ {
		if kw[k] == ' ' {
			if i >= len(s) || !isSpace(s[i]) {
				return 0, false
			}
			for i < len(s) && isSpace(s[i]) {
				i++
			}
			continue
		}
		if i >= len(s) || lower(s[i]) != kw[k] {
			return 0, false
		}
		i++
	}
	return i, true
}

func isSpace(b byte) bool {
	return b == ' ' || b == '\t' || b == '\n' || b == '\r' || b == '\f' || b == '\v'
}

// containsWord reports whether w contains one of kws (lower case, ' ' for
// any white space) starting at a word boundary; a kw ending in '$' must
// also end at one.
func containsWord(w string, kws ...string) bool {
	for i := 0; i < len(w); i++ {
		if i > 0 && isAlnum(w[i-1]) {
			continue
		}
		for _, kw := range kws {
			whole := strings.HasSuffix(kw, "$")
			n, ok := hasPrefixFold(w[i:], strings.TrimSuffix(kw, "$"))
			if ok && (!whole || i+n >= len(w) || !isAlnum(w[i+n])) {
				return true
			}
		}
	}
	return false
}

// ---------------------------------------------------------------- SSN

// SSN: AAA-GG-SSSS, written with '-' or ' ' (the same separator twice), or
// as a bare 9-digit run. SSA never issues (POMS RM 10201.035): area 000,
// 666 or 900–999; group 00; serial 0000. Also refused: 078-05-1120 (the
// 1938 Woolworth wallet insert) and 219-09-9999 (printed in an SSA
// pamphlet), the two numbers SSA voided after advertising use; SSA's
// reserved advertising range 987-65-4320..4329 falls in 9xx already.
//
// Trade-off: a bare 9-digit run is everywhere (order, claim and routing
// numbers; a random run passes the range rules ~89% of the time), so it
// counts only with "SSN", "SS#", "SS no", "social security" or "soc sec"
// within 40 bytes before it. The separated forms count without a keyword.
func ssnValid(area, group, serial string) bool {
	if area == "000" || area == "666" || area[0] == '9' || group == "00" || serial == "0000" {
		return false
	}
	switch area + group + serial {
	case "078051120", "219099999":
		return false
	}
	return true
}

var ssnContext = []string{"ssn", "ss#", "ss #", "ss no", "social security", "soc sec", "soc. sec", "soc.sec"}

func countSSN(s string, runs []run) int {
	n := 0
	for k, r := range runs {
		switch r.len() {
		case 3:
			if k+2 >= len(runs) || runs[k+1].len() != 2 || runs[k+2].len() != 4 {
				continue
			}
			g1, g2 := gap(s, runs, k), gap(s, runs, k+1)
			if g1 != g2 || (g1 != "-" && g1 != " ") {
				continue
			}
			if leftOK(s, r.start) && rightOK(s, runs[k+2].end) &&
				ssnValid(s[r.start:r.end], s[runs[k+1].start:runs[k+1].end], s[runs[k+2].start:runs[k+2].end]) {
				n++
			}
		case 9:
			d := s[r.start:r.end]
			if leftOK(s, r.start) && rightOK(s, r.end) && ssnValid(d[:3], d[3:5], d[5:]) &&
				containsWord(window(s, r.start), ssnContext...) {
				n++
			}
		}
	}
	return n
}

// ---------------------------------------------------------------- NPI

// NPI: 10 digits, first digit 1 or 2, the 10th a Luhn check digit computed
// over "80840" (the ISO/IEC 7812 prefix for US health applications)
// followed by the first 9 digits, as CMS's NPI check-digit specification
// prescribes (equivalently: Luhn over the 9 digits, plus the constant 24).
//
// Trade-off: no keyword is required, since NPIs sit bare in referral
// letters and claims. One 10-digit number in ten starting with 1 or 2
// passes the check, so other 10-digit identifiers (including Unix
// timestamps) occasionally count; NPIs are public, so policies should
// weigh this detector low on its own.
func npiValid(d string) bool {
	return len(d) == 10 && (d[0] == '1' || d[0] == '2') && luhn("80840"+d)
}

func countNPI(s string, runs []run) int {
	n := 0
	for _, r := range runs {
		if r.len() == 10 && leftOK(s, r.start) && rightOK(s, r.end) && npiValid(s[r.start:r.end]) {
			n++
		}
	}
	return n
}

// luhn reports whether the digit string d passes the Luhn (mod 10) check,
// its last digit being the check digit (ISO/IEC 7812-1 Annex B).
func luhn(d string) bool {
	if d == "" {
		return false
	}
	sum := 0
	double := false
	for i := len(d) - 1; i >= 0; i-- {
		c := d[i]
		if !isDigit(c) {
			return false
		}
		v := int(c - '0')
		if double {
			v *= 2
			if v > 9 {
				v -= 9
			}
		}
		sum += v
		double = !double
	}
	return sum%10 == 0
}

// ---------------------------------------------------------------- MBI

// MBI (Medicare Beneficiary Identifier; CMS, "Understanding the Medicare
// Beneficiary Identifier (MBI) Format"): 11 characters C A AN N A AN N A A
// N N: position 1 a digit 1–9; 2, 5, 8, 9 letters; 3 and 6 a letter or a
// digit; 4, 7, 10, 11 digits. Letters exclude S, L, O, I, B and Z. CMS
// prints it with dashes after the 4th and 7th characters for readability;
// both or neither are accepted here, and lower case too (people type it).
//
// Trade-off: the shape is specific enough (an 11-character token with
// digits at five fixed places) to need no keyword.
func mbiLetter(b byte) bool {
	b = lower(b)
	return 'a' <= b && b <= 'z' && strings.IndexByte("slobzi", b) < 0
}

// mbiAt returns the end of an MBI starting at s[p], or -1.
func mbiAt(s string, p int) int {
	const shape = "1ALNALNAANN" // 1: digit 1-9, A: letter, L: letter or digit, N: digit
	dashes := p+4 < len(s) && s[p+4] == '-'
	i := p
	for k := 0; k < len(shape); k++ {
		if dashes && (k == 4 || k == 7) {
			if i >= len(s) || s[i] != '-' {
				return -1
			}
			i++
		}
		if i >= len(s) {
			return -1
		}
		c := s[i]
		ok := false
		switch shape[k] {
		case '1':
			ok = '1' <= c && c <= '9'
		case 'A':
			ok = mbiLetter(c)
		case 'L':
			ok = mbiLetter(c) || isDigit(c)
		case 'N':
			ok = isDigit(c)
		}
		if !ok {
			return -1
		}
		i++
	}
	return i
}

func countMBI(s string, runs []run) int {
	n := 0
	for _, r := range runs {
		// Position 1 is a digit and position 2 a letter: an MBI starts
		// with a one-digit run.
		if r.len() != 1 || !leftOK(s, r.start) {
			continue
		}
		if end := mbiAt(s, r.start); end > 0 && rightOK(s, end) {
			n++
		}
	}
	return n
}

// ---------------------------------------------------------------- ICD-10-CM

// ICD-10-CM code shapes (ICD-10-CM Official Guidelines for Coding and
// Reporting, CDC/NCHS, Section I.A): a category of a letter, a digit and a digit (or A/B: C4A, C7A, C7B,
// D3A, M1A, O9A, Z3A), then optionally a dot and 1–4 more characters
// (subcategory, 7th-character extension, X placeholders): E11.9, I10,
// S72.001A, T36.0X1A. First letters A–T and V–Z; U is reserved by WHO for
// special purposes and ICD-10-CM uses only U07 (U07.0 vaping, U07.1
// COVID-19) and U09 (U09.9 post-COVID condition), which are accepted. Codes
// are matched in upper case only, as they are written.
//
// Trade-off: the bare 3-character form ("A12", "B12", "R15") collides with
// grid references, models, vitamins and room numbers, and so does the
// undotted long form ("E119"), so both count only with "ICD", "dx", "ddx"
// or "diagnos…" within 40 bytes before, or when they continue a list that
// started with a counted code ("Dx: E11.9, I10, N18.3" counts 3). The dotted
// form counts without context; version-like strings ("V12.5", but not
// "V12.5.1") are the remaining false positives.
var icdContext = []string{"icd", "dx$", "ddx$", "diagnos"}

func isUpperAlnum(b byte) bool { return isDigit(b) || 'A' <= b && b <= 'Z' }

// icdAt returns the end of an ICD-10-CM-shaped code at s[p] and whether it
// has the dotted form, or -1.
func icdAt(s string, p int) (int, bool) {
	if p+3 > len(s) {
		return -1, false
	}
	c0, c1, c2 := s[p], s[p+1], s[p+2]
	switch {
	case c0 == 'U':
		if c1 != '0' || (c2 != '7' && c2 != '9') {
			return -1, false
		}
	case 'A' <= c0 && c0 <= 'Z':
		if !isDigit(c1) || !(isDigit(c2) || c2 == 'A' || c2 == 'B') {
			return -1, false
		}
	default:
		return -1, false
	}
	i := p + 3
	dotted := i+1 < len(s) && s[i] == '.' && isUpperAlnum(s[i+1])
	if dotted {
		i++
	}
	for k := 0; k < 4 && i < len(s) && isUpperAlnum(s[i]); k++ {
		i++
	}
	return i, dotted
}

func countICD10(s string, runs []run) int {
	n := 0
	lastEnd := -1 // end of the last counted code, for lists
	for _, r := range runs {
		p := r.start - 1 // the letter before the first digit
		if p < 0 || p < lastEnd || !leftOK(s, p) {
			continue
		}
		end, dotted := icdAt(s, p)
		if end < 0 || !rightOK(s, end) {
			continue
		}
		if !dotted && !continuesList(s, lastEnd, p) && !containsWord(window(s, p), icdContext...) {
			continue
		}
		n++
		lastEnd = end
	}
	return n
}

// continuesList reports whether s[prevEnd:i] is a short list separator
// (", ", "; ", " / ", " and ").
func continuesList(s string, prevEnd, i int) bool {
	if prevEnd < 0 || i-prevEnd > 8 {
		return false
	}
	gap := strings.ToLower(strings.Trim(s[prevEnd:i], " ,;/\t\r\n"))
	return gap == "" || gap == "and" || gap == "or" || gap == "&"
}

// ---------------------------------------------------------------- Card

// Payment card: 13–19 digits, written without separators or in groups with
// one kind of separator (space or '-'): 4-4-4-4(-3), 4-4-4-1..4, Amex
// 4-6-5. The number must pass Luhn (ISO/IEC 7812-1) and start with a
// plausible issuer prefix at a length that issuer uses: Visa 4 (13, 16,
// 19), Mastercard 51–55 or 2221–2720 (16), Amex 34/37 (15), Discover 6011,
// 644–649, 65 (16–19). Numbers of one repeated digit are refused.
//
// Trade-off: well-known test numbers (4111 1111 1111 1111) count: a DLP
// cannot tell them from real ones, and mail carrying them is rare.
func cardValid(d string) bool {
	l := len(d)
	if l < 13 || l > 19 || strings.Count(d, d[:1]) == l || !luhn(d) {
		return false
	}
	p2 := int(d[0]-'0')*10 + int(d[1]-'0')
	p3 := p2*10 + int(d[2]-'0')
	p4 := p3*10 + int(d[3]-'0')
	switch {
	case d[0] == '4':
		return l == 13 || l == 16 || l == 19
	case p2 >= 51 && p2 <= 55, p4 >= 2221 && p4 <= 2720:
		return l == 16
	case p2 == 34 || p2 == 37:
		return l == 15
	case p4 == 6011, p2 == 65, p3 >= 644 && p3 <= 649:
		return l >= 16 && l <= 19
	}
	return false
}

// groupingOK reports whether the group lengths are a way cards are
// written.
func groupingOK(g []int) bool {
	if len(g) == 1 {
		return true
	}
	if len(g) == 3 && g[0] == 4 && g[1] == 6 && g[2] == 5 {
		return true
	}
	for _, x := range g[:len(g)-1] {
		if x != 4 {
			return false
		}
	}
	last := g[len(g)-1]
	return last >= 1 && last <= 4
}

func countCards(s string, runs []run) int {
	n := 0
	var lens []int
	var buf []byte
	for c := 0; c < len(runs); {
		// A chain: runs joined by single spaces or dashes.
		e := c + 1
		for e < len(runs) && runs[e].start == runs[e-1].end+1 && (s[runs[e-1].end] == ' ' || s[runs[e-1].end] == '-') {
			e++
		}
		chain := runs[c:e]
		c = e
		if chain[len(chain)-1].end-chain[0].start < 13 {
			continue
		}
		// Try windows of consecutive groups, leftmost first, without
		// overlap: a card may sit in a chain next to other numbers
		// ("Ref 1234 4111 1111 1111 1111").
		for i := 0; i < len(chain); i++ {
			if i == 0 && !leftOK(s, chain[0].start) {
				continue
			}
			digits := 0
			lens = lens[:0]
			for j := i; j < len(chain); j++ {
				if j > i && (s[chain[j].start-1] != s[chain[i+1].start-1] || chain[i].len() != 4) {
					break // mixed separators, or a multi-group card not starting with a group of 4
				}
				digits += chain[j].len()
				lens = append(lens, chain[j].len())
				if digits > 19 {
					break
				}
				if digits < 13 {
					continue
				}
				if j == len(chain)-1 && !rightOK(s, chain[j].end) {
					break
				}
				if !groupingOK(lens) {
					continue
				}
				buf = buf[:0]
				for _, g := range chain[i : j+1] {
					buf = append(buf, s[g.start:g.end]...)
				}
				if cardValid(string(buf)) {
					n++
					i = j // continue after this card
					break
				}
			}
		}
	}
	return n
}

// ---------------------------------------------------------------- Phone

// Phone: North American Numbering Plan numbers written as (NPA) NXX-XXXX,
// NPA-NXX-XXXX, NPA.NXX.XXXX or NPA NXX XXXX (the same separator twice),
// optionally after "1" or "+1" (and a space, '.' or '-'), or as E.164
// +1NPANXXXXXX. The area code and exchange start with 2–9 and are not N11
// service codes (211, 411, 911…), per the NANPA numbering plan.
//
// Not counted: 555-0100..555-0199 (reserved by NANPA for fictional use),
// toll-free area codes (800, 833, 844, 855, 866, 877, 888: organisations'
// numbers, almost never a patient's, and in every signature), and bare
// 10-digit runs (indistinguishable from NPIs and account numbers).
// Trade-off: the organisation's own direct-dial numbers in signatures still
// count, so a policy should not act on "phone" alone.
func phoneValid(npa, nxx, line string) bool {
	if npa[0] < '2' || nxx[0] < '2' || npa[1:] == "11" || nxx[1:] == "11" {
		return false
	}
	switch npa {
	case "800", "833", "844", "855", "866", "877", "888":
		return false
	}
	if nxx == "555" && strings.HasPrefix(line, "01") {
		return false
	}
	return true
}

func isPhoneSep(g string) bool { return g == " " || g == "." || g == "-" }

func countPhones(s string, runs []run) int {
	n := 0
	for k := 0; k < len(runs); k++ {
		r := runs[k]
		if r.len() == 11 && s[r.start] == '1' && r.start > 0 && s[r.start-1] == '+' { // E.164
			if leftOK(s, r.start-1) && rightOK(s, r.end) &&
				phoneValid(s[r.start+1:r.start+4], s[r.start+4:r.start+7], s[r.start+7:r.end]) {
				n++
			}
			continue
		}
		if r.len() != 3 || k+2 >= len(runs) || runs[k+1].len() != 3 || runs[k+2].len() != 4 {
			continue
		}
		start := r.start
		g1, g2 := gap(s, runs, k), gap(s, runs, k+1)
		switch {
		case start > 0 && s[start-1] == '(' && (g1 == ")" || g1 == ") "): // (NPA) NXX-XXXX
			start--
			if !isPhoneSep(g2) {
				continue
			}
		case isPhoneSep(g1) && g1 == g2: // NPA-NXX-XXXX
		default:
			continue
		}
		// Optional country code: "1", "1 ", "1-", "1.", with an optional
		// '+', when the "1" stands alone.
		one := start - 1
		if one >= 0 && (s[one] == ' ' || s[one] == '-' || s[one] == '.') {
			one--
		}
		if one >= 0 && s[one] == '1' && (one == 0 || !isDigit(s[one-1])) {
			start = one
			if one > 0 && s[one-1] == '+' {
				start--
			}
		}
		end := runs[k+2].end
		if leftOK(s, start) && rightOK(s, end) &&
			phoneValid(s[r.start:r.end], s[runs[k+1].start:runs[k+1].end], s[runs[k+2].start:end]) {
			n++
			k += 2
		}
	}
	return n
}

// ---------------------------------------------------------------- DOB

// DOB: a date starting within 40 bytes after "DOB", "D.O.B.", "date of
// birth", "birth date"/"birthdate" or "born" (case-insensitive). Formats:
// MM/DD/YYYY, M/D/YY, M-D-YYYY (US order; the same separator twice),
// YYYY-MM-DD, YYYY/MM/DD, "January 5, 1980", "Jan. 5th 1980", "5 Jan 1980",
// "05-JAN-1980", "5 January 80". Only the first date-shaped text after a
// keyword is considered; it counts only if it is a real calendar date (no
// 02/30, 02/29 only in leap years) in 1900..today. Two-digit years are read
// as 20YY when that is not after this year, else 19YY.
//
// Trade-off: a date without a keyword is not a DOB (visit and letter dates
// are everywhere); "DOB" after the date ("01/05/1980 (DOB)") is missed.
// Several keywords before one date ("Date of birth (DOB): …") count once.
func countDOB(s string, now time.Time) int {
	n := 0
	lastDate := -1
	f := dateFinder{s: s, now: now, to: -1, pos: -1}
	for i := 0; i < len(s); i++ {
		c := s[i] | 0x20
		if (c != 'd' && c != 'b') || (i > 0 && isAlnum(s[i-1])) {
			continue
		}
		kwEnd := dobKeyword(s, i)
		if kwEnd < 0 {
			continue
		}
		i = kwEnd - 1
		start := f.first(kwEnd)
		if start < 0 || start == lastDate {
			continue
		}
		end, y, m, d, _, ok := dateAt(s, start, now)
		if ok && leftOK(s, start) && rightOK(s, end) && validBirthDate(y, m, d, now) {
			n++
			lastDate = start
		}
	}
	return n
}

// dateFinder finds the first date-shaped text starting within
// contextWindow bytes of a position. It remembers its last search, so that
// keywords packed close together ("DOB DOB DOB …") cost linear time, not
// contextWindow tries each.
type dateFinder struct {
	s        string
	now      time.Time
	from, to int // the last search covered s[from..to]
	pos      int // and found a date there (-1: none)
}

func (f *dateFinder) first(from int) int {
	to := min(from+contextWindow, len(f.s)-1)
	scan := from
	if f.to >= 0 && from >= f.from {
		if f.pos >= from {
			if f.pos <= to {
				return f.pos
			}
			return -1
		}
		if f.pos < 0 {
			scan = max(from, f.to+1) // nothing in [from, f.to]
		}
	}
	f.from, f.to, f.pos = from, to, -1
	for p := scan; p <= to; p++ {
		if _, _, _, _, shaped, _ := dateAt(f.s, p, f.now); shaped {
			f.pos = p
			break
		}
	}
	return f.pos
}

// dobKeyword returns the end of a DOB keyword starting at s[i] (at a word
// start), or -1.
func dobKeyword(s string, i int) int {
	c := lower(s[i])
	for _, kw := range dobKeywords {
		if kw[0] != c {
			continue
		}
		if n, ok := hasPrefixFold(s[i:], kw); ok {
			end := i + n
			if kw[len(kw)-1] != '.' && end < len(s) && isAlnum(s[end]) {
				continue
			}
			return end
		}
	}
	return -1
}

var dobKeywords = []string{"d.o.b.", "d.o.b", "dob.", "dob", "date of birth", "birthdate", "birth date", "born"}

var months = []struct {
	name string
	num  int
}{
	{"january", 1}, {"jan", 1}, {"february", 2}, {"feb", 2}, {"march", 3}, {"mar", 3},
	{"april", 4}, {"apr", 4}, {"may", 5}, {"june", 6}, {"jun", 6}, {"july", 7}, {"jul", 7},
	{"august", 8}, {"aug", 8}, {"september", 9}, {"sept", 9}, {"sep", 9},
	{"october", 10}, {"oct", 10}, {"november", 11}, {"nov", 11}, {"december", 12}, {"dec", 12},
}

// monthAt returns the month named at s[p] (longest name first) and the end
// of the name, or 0.
func monthAt(s string, p int) (int, int) {
	c := lower(s[p])
	for _, mo := range months {
		if mo.name[0] != c {
			continue
		}
		if n, ok := hasPrefixFold(s[p:], mo.name); ok {
			return mo.num, p + n
		}
	}
	return 0, p
}

// digitsAt returns the run of up to limit digits at s[p] and its end.
func digitsAt(s string, p, limit int) (string, int) {
	i := p
	for i < len(s) && i-p < limit && isDigit(s[i]) {
		i++
	}
	return s[p:i], i
}

func atoi(d string) int {
	v := 0
	for i := 0; i < len(d); i++ {
		v = v*10 + int(d[i]-'0')
	}
	return v
}

// yearAt reads a 4- or 2-digit year at s[p] (four preferred).
func yearAt(s string, p int, now time.Time) (int, int, bool) {
	d, e := digitsAt(s, p, 4)
	switch len(d) {
	case 4:
		return atoi(d), e, true
	case 2, 3:
		v := atoi(d[:2])
		if 2000+v <= now.Year() {
			return 2000 + v, p + 2, true
		}
		return 1900 + v, p + 2, true
	}
	return 0, p, false
}

func skipOrdinal(s string, i int) int {
	for _, o := range []string{"st", "nd", "rd", "th"} {
		if n, ok := hasPrefixFold(s[i:], o); ok {
			return i + n
		}
	}
	return i
}

func skip(s string, i int, set string) int {
	for i < len(s) && strings.IndexByte(set, s[i]) >= 0 {
		i++
	}
	return i
}

// dateAt tries the date formats at s[p]. shaped says the text looks like a
// date; ok that its fields were read (the calendar is checked later).
func dateAt(s string, p int, now time.Time) (end, y, m, d int, shaped, ok bool) {
	c := s[p]
	if isDigit(c) {
		a, i := digitsAt(s, p, 5)
		// YYYY-MM-DD, YYYY/MM/DD
		if len(a) == 4 && i < len(s) && (s[i] == '-' || s[i] == '/') {
			sep := s[i]
			mo, j := digitsAt(s, i+1, 2)
			if len(mo) > 0 && j < len(s) && (s[j] == '-' || s[j] == '/') {
				da, k := digitsAt(s, j+1, 2)
				if len(da) > 0 {
					return k, atoi(a), atoi(mo), atoi(da), true, s[j] == sep
				}
			}
			return 0, 0, 0, 0, false, false
		}
		if len(a) < 1 || len(a) > 2 {
			return 0, 0, 0, 0, false, false
		}
		// M/D/YYYY, M-D-YY
		if i < len(s) && (s[i] == '-' || s[i] == '/') {
			sep := s[i]
			da, j := digitsAt(s, i+1, 2)
			if len(da) > 0 && j < len(s) && (s[j] == '-' || s[j] == '/') {
				if yy, k, yok := yearAt(s, j+1, now); yok {
					return k, yy, atoi(a), atoi(da), true, s[j] == sep
				}
			}
		}
		// 5 Jan 1980, 05-JAN-80, 5th January 1980
		j := skip(s, skipOrdinal(s, i), " \t\r\n-")
		if j > i && j < len(s) {
			if mo, k := monthAt(s, j); mo > 0 {
				k = skip(s, k, ".,")
				if l := skip(s, k, " \t\r\n-"); l > k {
					if yy, e, yok := yearAt(s, l, now); yok {
						return e, yy, mo, atoi(a), true, true
					}
				}
			}
		}
		return 0, 0, 0, 0, false, false
	}
	// January 5, 1980; Jan. 5th 1980
	if strings.IndexByte("jfmasondJFMASOND", c) < 0 || p > 0 && isAlnum(s[p-1]) {
		return 0, 0, 0, 0, false, false
	}
	mo, k := monthAt(s, p)
	if mo == 0 {
		return 0, 0, 0, 0, false, false
	}
	if k < len(s) && s[k] == '.' {
		k++
	}
	j := skip(s, k, " \t\r\n")
	if j == k {
		return 0, 0, 0, 0, false, false
	}
	da, j := digitsAt(s, j, 2)
	if len(da) == 0 {
		return 0, 0, 0, 0, false, false
	}
	j = skipOrdinal(s, j)
	if j < len(s) && s[j] == ',' {
		j++
	}
	l := skip(s, j, " \t\r\n")
	if l == j {
		return 0, 0, 0, 0, false, false
	}
	yy, e := digitsAt(s, l, 4)
	if len(yy) != 4 {
		return 0, 0, 0, 0, false, false
	}
	return e, atoi(yy), mo, atoi(da), true, true
}

func validBirthDate(y, mo, d int, now time.Time) bool {
	if y < 1900 || mo < 1 || mo > 12 || d < 1 {
		return false
	}
	t := time.Date(y, time.Month(mo), d, 0, 0, 0, 0, time.UTC)
	if t.Day() != d || t.Month() != time.Month(mo) { // normalised: 02/30 -> 03/02
		return false
	}
	ny, nm, nd := now.Date()
	return !t.After(time.Date(ny, nm, nd, 0, 0, 0, 0, time.UTC))
}
