package web

import (
	"strconv"
	"strings"
	"time"
	// The zone database travels with the binary: a slim container has none.
	_ "time/tzdata"
)

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

// TimeLayout is how people read a time in pages and notices: the day, the
// time and the zone ("6 Dec 2026, 17:05 CET"), so nobody has to guess
// whether a time is the server's, the clinic's or their own.
const TimeLayout = "2 Jan 2006, 15:04 MST"

// When formats t in loc, the organisation's time zone (org.time_zone, see
// Zone); nil loc is UTC. A zero time is "". Pages (the template func
// "date") and notice emails use it, so a time reads the same everywhere.
func When(t time.Time, loc *time.Location) string {
	if t.IsZero() {
		return ""
	}
	if loc == nil {
		loc = time.UTC
	}
	return t.In(loc).Format(TimeLayout)
}

// IDTail is the part of a row id that tells it from others made at the
// same time: an id of 44 hex digits starts with 12 of creation time
// (store.NewID), which the tail leaves out; an older id of 32 is random
// throughout and is its own tail. Short forms of an id (Ref, the audit
// page's) begin with it.
func IDTail(id string) string {
	if len(id) == 44 {
		return id[12:]
	}
	return id
}

// Ref is a message's short reference, as the sender's notes and the
// portal show it ("3F2A-91BC": the first 8 hex digits of IDTail), so a
// sender can match a note to a row of their Sent page; a message from
// before time-ordered ids keeps the reference it always had. It names the
// message only; it is not a secret and grants nothing.
func Ref(id string) string {
	id = IDTail(id)
	if len(id) < 8 {
		return strings.ToUpper(id)
	}
	return strings.ToUpper(id[:4] + "-" + id[4:8])
}
