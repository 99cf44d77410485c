// Package password decides whether a new password is acceptable: long
// enough, hard to guess (zxcvbn with its frequency lists of common passwords,
// words, names and keyboard patterns), and not built on the person's email
// name. It never stores, logs or hashes passwords; the history rule ("none of
// your last 4 passwords") is checked by the caller, which owns the hashes, and
// reported with Reused.
//
// Every failure is a *RuleError whose Message is written for the person
// choosing the password (plain language, says what to do next). Messages are
// built from fixed texts and counts only, never from the password, so they
// are safe to show and to log.
//
// Importing the package loads zxcvbn's frequency lists at start-up (about
// 70 ms and 18 MB of allocations, once).
package password

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	zxcvbn "github.com/ccojocar/zxcvbn-go"
	"github.com/ccojocar/zxcvbn-go/adjacency"
	"github.com/ccojocar/zxcvbn-go/match"
	"github.com/ccojocar/zxcvbn-go/matching"
	"github.com/ccojocar/zxcvbn-go/scoring"
	"golang.org/x/text/unicode/norm"
)

// HistorySize is how many earlier passwords may not be chosen again.
const HistorySize = 4

// Defaults of DefaultPolicy.
const (
	DefaultMinLength = 12
	DefaultMinScore  = 3
)

// Rule names carried by RuleError.Rule.
const (
	RuleLength        = "length"
	RuleStrength      = "strength"
	RuleContainsEmail = "contains-email"
	RuleReused        = "reused"
)

// MaxScoredRunes is how much of a password zxcvbn looks at. zxcvbn's matching
// is quadratic in the length (every substring against every frequency list)
// and its look-alike matcher multiplies that by the number of symbol
// readings it tries: 400 characters took 0.9 s here, and a 10 KB password
// would take far longer than any request may. A password whose
// first 100 characters are hard to guess is hard to guess; the length and
// email-name rules still see the whole password.
const MaxScoredRunes = 100

// leetBudget bounds zxcvbn's look-alike ("l33t") matcher. It tries every
// reading of the look-alike symbols present (1 as i or l, @ and 4 as a, ...)
// against every frequency list, so its cost is about readings x length^2 and
// the readings grow exponentially with the number of distinct symbols: 100
// characters mixing all of them took 4 s on one core. Real passwords that
// lean on look-alikes ("P@ssw0rd!", "L1ttl3 L!f3") have 1 to 4 readings and
// are short, so they stay well inside the budget (a 30-character password
// may have 44 readings); above it the matcher is skipped, and the many
// distinct symbols such a password needs are scored as random characters.
// The budget keeps one Check under about 50 ms on a 2-core box.
const leetBudget = 4 * MaxScoredRunes * MaxScoredRunes

// Policy is the password policy. A zero field means its default, so a
// forgotten setting never switches a rule off.
type Policy struct {
	MinLength int // characters (Unicode code points); default 12
	MinScore  int // zxcvbn score 0..4 the password must reach; default 3
}

// DefaultPolicy returns the policy of issue #3: at least 12 characters and a
// zxcvbn score of at least 3.
func DefaultPolicy() Policy {
	return Policy{MinLength: DefaultMinLength, MinScore: DefaultMinScore}
}

func (p Policy) effective() Policy {
	if p.MinLength <= 0 {
		p.MinLength = DefaultMinLength
	}
	if p.MinScore <= 0 {
		p.MinScore = DefaultMinScore
	}
	if p.MinScore > 4 {
		p.MinScore = 4
	}
	return p
}

// RuleError names the failed rule and carries a plain-language message for
// the person choosing the password.
type RuleError struct {
	Rule    string // RuleLength, RuleStrength, RuleContainsEmail or RuleReused
	Message string
}

// Error returns Message.
func (e *RuleError) Error() string { return e.Message }

// Reused builds the RuleError for the history rule, for a password found
// among the last n (HistorySize when n <= 0).
func Reused(n int) *RuleError {
	if n <= 0 {
		n = HistorySize
	}
	msg := fmt.Sprintf("You used this password recently. Choose one you haven't used in your last %d passwords.", n)
	if n == 1 {
		msg = "You used this password recently. Choose one different from your last password."
	}
	return &RuleError{Rule: RuleReused, Message: msg}
}

// Check applies the policy to pw, chosen by the owner of email. userInputs
// are further words the person or an attacker would think of (the person's
// name, the organisation's name); zxcvbn treats them, the email and its
// pieces as the most likely guesses.
//
// Rules, in the order reported (the first that fails is returned):
//
//  1. length: at least MinLength characters, counted as Unicode code points.
//  2. contains-email: the email's local part (before the last '@'), compared
//     case-insensitively, must not appear in the password, with or without
//     its separators ("jane.doe" and "janedoe"), when it has 3 or more
//     characters. Each piece of the local part split on anything but
//     letters and digits ('.', '_', '-', '+', ...) must not appear either when
//     it has 4 or more characters: "jane.doe" rejects any password containing
//     "jane", but "doe" alone is allowed, because 3-letter pieces occur inside
//     ordinary words ("doe" in "does", "ann" in "annual", "lee" in "sleep")
//     and rejecting those would frustrate people for no gain; zxcvbn still
//     counts short pieces as easy guesses. This comes before strength because
//     it tells the person exactly what to change.
//  3. strength: the zxcvbn score of the first MaxScoredRunes characters must
//     reach MinScore. Accents and compatibility forms are folded first
//     ("ｐａｓｓｗｏｒｄ" is "password"); the email, its local part and pieces,
//     and userInputs with their words are zxcvbn's user inputs. zxcvbn here
//     gives no feedback text, so the message explains the longest weak
//     pattern it found (common password, word, name, keyboard pattern,
//     repeat, sequence, date, or the person's own details).
func (p Policy) Check(pw, email string, userInputs ...string) error {
	p = p.effective()

	if n := utf8.RuneCountInString(pw); n < p.MinLength {
		msg := fmt.Sprintf("Use at least %d characters (this one has %d).", p.MinLength, n)
		if n == 0 {
			msg = fmt.Sprintf("Enter a password of at least %d characters.", p.MinLength)
		}
		return &RuleError{Rule: RuleLength, Message: msg}
	}

	folded := fold(pw)
	local := strings.ToLower(fold(localPart(email)))
	if containsEmailName(strings.ToLower(folded), local) {
		return &RuleError{Rule: RuleContainsEmail, Message: "Don't use your email name in your password. Choose words that have nothing to do with you."}
	}

	res := score(folded, zxcvbnInputs(email, local, userInputs))
	if res.Score < p.MinScore {
		msg := "This password is too easy to guess. Try a longer phrase of unrelated words."
		if w := warning(res.MatchSequence); w != "" {
			msg = "This password is too easy to guess: " + w + ". Try a longer phrase of unrelated words."
		}
		return &RuleError{Rule: RuleStrength, Message: msg}
	}
	return nil
}

// fold prepares text for comparison and scoring: compatibility forms
// replaced by plain ones (full-width "ｐａｓｓｗｏｒｄ" is "password") and
// accents dropped ("José" is "Jose"); case is kept for zxcvbn, which scores
// capitals itself. Without it, look-alike Unicode
// would hide common passwords and names from the frequency lists, and the
// zxcvbn port, which mixes byte and character positions, would score
// accented letters as if they were random (14 times "é" scored 4).
func fold(s string) string {
	s = norm.NFKD.String(s)
	var b strings.Builder
	b.Grow(len(s))
	for _, r := range s {
		if unicode.Is(unicode.Mn, r) {
			continue
		}
		b.WriteRune(r)
	}
	return norm.NFC.String(b.String())
}

// score runs zxcvbn on at most MaxScoredRunes characters of the folded
// password, with the look-alike matcher only when it stays cheap.
func score(pw string, inputs []string) scoring.MinEntropyMatch {
	pw = truncateRunes(pw, MaxScoredRunes)
	var filters []func(match.Matcher) bool
	if n := utf8.RuneCountInString(pw); leetReadings(pw)*n*n > leetBudget {
		filters = append(filters, matching.FilterL33tMatcher)
	}
	return zxcvbn.PasswordStrength(pw, inputs, filters...)
}

func truncateRunes(s string, n int) string {
	i := 0
	for pos := range s {
		if i == n {
			return s[:pos]
		}
		i++
	}
	return s
}

// leetReadings is an upper bound of how many readings zxcvbn's look-alike
// matcher tries for pw: for each letter, the number of its look-alike
// symbols present, multiplied, and for each symbol that stands for several
// letters (1, | and 7), the number of letters it may stand for.
func leetReadings(pw string) int {
	table := adjacency.GraphMap["l33t"].Graph
	readings := 1
	present := map[string]int{} // symbol -> number of letters it may stand for
	for _, symbols := range table {
		n := 0
		for _, s := range symbols {
			if strings.Contains(pw, s) {
				n++
				present[s]++
			}
		}
		if n > 1 {
			readings *= n
		}
		if readings > leetBudget {
			return readings
		}
	}
	for _, letters := range present {
		if letters > 1 {
			readings *= letters
		}
	}
	return readings
}

func localPart(email string) string {
	email = strings.TrimSpace(email)
	if i := strings.LastIndexByte(email, '@'); i >= 0 {
		email = email[:i]
	}
	return email
}

// emailNameParts returns what a password may not contain for the email local
// part (lower case): the local part and the local part without separators
// (if 3 or more characters), and each piece of 4 or more characters.
func emailNameParts(local string) []string {
	var parts []string
	pieces := strings.FieldsFunc(local, func(r rune) bool { return !unicode.IsLetter(r) && !unicode.IsDigit(r) })
	if utf8.RuneCountInString(local) >= 3 {
		parts = append(parts, local)
	}
	if joined := strings.Join(pieces, ""); joined != local && utf8.RuneCountInString(joined) >= 3 {
		parts = append(parts, joined)
	}
	for _, piece := range pieces {
		if utf8.RuneCountInString(piece) >= 4 {
			parts = append(parts, piece)
		}
	}
	return parts
}

// containsEmailName reports whether pw contains the local part or one of its
// long pieces (both folded and in lower case).
func containsEmailName(pw, local string) bool {
	if local == "" {
		return false
	}
	for _, part := range emailNameParts(local) {
		if strings.Contains(pw, part) {
			return true
		}
	}
	return false
}

// zxcvbnInputs returns the user inputs for zxcvbn: the email, its local part
// and pieces, and each extra input with its words.
func zxcvbnInputs(email, local string, extra []string) []string {
	var in []string
	add := func(s string) {
		s = strings.TrimSpace(s)
		if s == "" {
			return
		}
		in = append(in, s)
		words := strings.FieldsFunc(s, func(r rune) bool { return !unicode.IsLetter(r) && !unicode.IsDigit(r) })
		if len(words) > 1 {
			for _, w := range words {
				if utf8.RuneCountInString(w) >= 3 {
					in = append(in, w)
				}
			}
		}
	}
	add(email)
	add(local)
	for _, s := range extra {
		add(s)
	}
	return in
}

// warning explains in plain words the pattern that makes a password easy to
// guess: the zxcvbn port we use scores but gives no feedback, so this
// follows zxcvbn's own feedback texts. It looks at the longest pattern found,
// preferring the person's own details. It never quotes the password.
func warning(seq []match.Match) string {
	var best *match.Match
	for i := range seq {
		m := &seq[i]
		if m.Pattern == "bruteforce" {
			continue
		}
		if strings.HasPrefix(m.DictionaryName, "user_inputs") {
			return "it contains your name, your email address or your organisation's name"
		}
		if best == nil || m.J-m.I > best.J-best.I {
			best = m
		}
	}
	if best == nil {
		return ""
	}
	switch best.Pattern {
	case "dictionary":
		var w string
		switch strings.TrimSuffix(best.DictionaryName, "_3117") {
		case "Passwords":
			w = "it is built on a password that very many people use"
		case "MaleNames", "FemaleNames", "Surname":
			w = "it is built on a name"
		default:
			w = "it is built on a common word"
		}
		if strings.HasSuffix(best.DictionaryName, "_3117") {
			w += ", and swapping letters for look-alike symbols (like @ for a) doesn't help"
		}
		return w
	case "spatial":
		return "it follows a pattern on the keyboard (like qwerty)"
	case "repeat":
		return "it repeats the same character (like aaa)"
	case "sequence":
		return "it uses a sequence (like abc or 1234)"
	case "date":
		return "it uses a date or a year"
	}
	return ""
}
