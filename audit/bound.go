package audit

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Bounds on what one entry stores (issue 8.3). Many fields come from an
// unauthenticated client (a typed email address, an SMTP user name, an
// EHLO name): every caller's entry is cut to these bounds before it is
// sealed, so no client can make the trail store more than a few hundred
// bytes per field, whoever records it.
const (
	// MaxFieldBytes bounds each plaintext field and each detail value.
	MaxFieldBytes = 256
	// MaxDetailKeyBytes bounds each detail key.
	MaxDetailKeyBytes = 64
	// MaxDetails bounds the number of details in one entry.
	MaxDetails = 32
	// TruncatedKey is the detail that lists, when anything was cut, how
	// many bytes (or details) were dropped.
	TruncatedKey = "truncated"
)

// truncMark ends a value that was cut.
const truncMark = "…"

// bound returns e with every plaintext field and detail within the bounds
// above. A cut value ends in "…", and Details gets TruncatedKey naming the
// fields cut and the bytes they lost ("email:1893 actor:12"), so that a
// reader knows the value is not whole. The caller's map is not changed.
func bound(e Entry) Entry {
	var cuts []string
	cut := func(name, v string, limit int) string {
		s, lost := truncate(v, limit)
		if lost > 0 {
			cuts = append(cuts, name+":"+strconv.Itoa(lost))
		}
		return s
	}
	for _, f := range []struct {
		name string
		v    *string
	}{
		{"actor", &e.Actor}, {"ip", &e.IP}, {"action", &e.Action}, {"object_type", &e.ObjectType},
		{"object_id", &e.ObjectID}, {"outcome", &e.Outcome}, {"correlation", &e.Correlation},
	} {
		*f.v = cut(f.name, *f.v, MaxFieldBytes)
	}
	if len(e.Details) > 0 {
		keys := slices.Sorted(maps.Keys(e.Details))
		if len(keys) > MaxDetails {
			cuts = append(cuts, fmt.Sprintf("details:%d", len(keys)-MaxDetails))
			keys = keys[:MaxDetails]
		}
		d := make(map[string]string, len(keys)+1)
		for _, k := range keys {
			bk := cut("key", k, MaxDetailKeyBytes)
			d[bk] = cut(bk, e.Details[k], MaxFieldBytes)
		}
		e.Details = d
	}
	if len(cuts) > 0 {
		if e.Details == nil {
			e.Details = map[string]string{}
		}
		e.Details[TruncatedKey], _ = truncate(strings.Join(cuts, " "), MaxFieldBytes)
	}
	return e
}

// truncate cuts s to at most limit bytes, on a rune boundary and ending in
// truncMark, and reports how many bytes of s were dropped.
func truncate(s string, limit int) (string, int) {
	if len(s) <= limit {
		return s, 0
	}
	n := limit - len(truncMark)
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + truncMark, len(s) - n
}
