package web

import "strconv"

func trim(f float64) string { return strconv.FormatFloat(f, 'f', 1, 64) }

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// Count writes a number with its noun in the right form: "1 message",
// "3 messages", "0 messages". plural is given only when it is not noun+"s"
// ("1 match", "2 matches"). Pages, notices and CLI output all use it, so
// nobody reads "1 message(s)".
func Count(n int, noun string, plural ...string) string {
	return strconv.Itoa(n) + " " + Noun(n, noun, plural...)
}

// Noun is the noun alone in the form that goes with n.
func Noun(n int, noun string, plural ...string) string {
	if n == 1 || n == -1 {
		return noun
	}
	if len(plural) > 0 {
		return plural[0]
	}
	return noun + "s"
}

// toInt takes the integer kinds page data uses for counts.
func toInt(v any) (int, bool) {
	switch n := v.(type) {
	case int:
		return n, true
	case int64:
		return int(n), true
	case int32:
		return int(n), true
	case uint:
		return int(n), true
	case uint64:
		return int(n), true
	}
	return 0, false
}
