package config

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Year is the length ParseSpan gives "1y": 365.25 days, so "6y" covers six
// calendar years whatever the leap days.
const Year = 365*24*time.Hour + 6*time.Hour

// MinAuditRetention is the shortest audit retention phigate accepts: HIPAA
// 164.316(b)(2)(i) asks for documentation to be kept six years.
const MinAuditRetention = 6 * Year

// ParseSpan reads a retention period: a whole number and a unit, "90d"
// (days), "6y" (years of 365.25 days), "12w" (weeks), or anything
// time.ParseDuration reads ("36h"). Policies and settings say how long to
// keep things in days and years, which time.ParseDuration cannot.
func ParseSpan(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, errors.New("empty period")
	}
	unit := map[byte]time.Duration{'d': 24 * time.Hour, 'w': 7 * 24 * time.Hour, 'y': Year}
	if u, ok := unit[s[len(s)-1]]; ok {
		n, err := strconv.Atoi(s[:len(s)-1])
		if err != nil || n < 0 {
			return 0, fmt.Errorf("period %q: use a whole number and d, w or y (\"90d\", \"6y\")", s)
		}
		if time.Duration(n) > math.MaxInt64/u {
			return 0, fmt.Errorf("period %q: too long (at most 290 years)", s)
		}
		return time.Duration(n) * u, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("period %q: use a whole number and d, w or y (\"90d\", \"6y\")", s)
	}
	return d, nil
}

// Span is a retention period in the configuration ("6y", "180d").
type Span struct{ time.Duration }

func (s *Span) UnmarshalText(b []byte) error {
	d, err := ParseSpan(string(b))
	if err != nil {
		return err
	}
	s.Duration = d
	return nil
}

func (s Span) MarshalText() ([]byte, error) { return []byte(FormatSpan(s.Duration)), nil }

// FormatSpan writes d in the largest whole unit ParseSpan reads back.
func FormatSpan(d time.Duration) string {
	switch {
	case d > 0 && d%Year == 0:
		return fmt.Sprintf("%dy", d/Year)
	case d > 0 && d%(24*time.Hour) == 0:
		return fmt.Sprintf("%dd", d/(24*time.Hour))
	}
	return d.String()
}

// Retention holds the disposal settings that are the operator's, not the
// data-sharing policy's (issue 14.4). How long messages and unclaimed
// accounts live is decided per rule in the policy (docs/policies.md).
type Retention struct {
	// Audit is how long the audit trail is kept: at least six years. phigate
	// never deletes audit rows (the tables refuse it); this is the period
	// the organisation promises, which the compliance report holds the
	// trail to.
	Audit Span `toml:"audit"`
	// PushStale: a push subscription with no push accepted (or, if never
	// used, created) for this long is deleted; the device turns
	// notifications on again to get them back.
	PushStale Span `toml:"push_stale"`
	// PurgeInterval is how often serve disposes of what is due.
	PurgeInterval Duration `toml:"purge_interval"`
	// PurgeBatch bounds each purge transaction: at most this many rows of
	// each kind; a run that hits it runs again at once (invariant 7).
	PurgeBatch int `toml:"purge_batch"`
}

// DefaultRetention is what docs/configuration.md lists.
func DefaultRetention() Retention {
	return Retention{Audit: Span{MinAuditRetention}, PushStale: Span{180 * 24 * time.Hour},
		PurgeInterval: Duration{time.Hour}, PurgeBatch: 100}
}

func (r Retention) validate() error {
	var errs []error
	if r.Audit.Duration < MinAuditRetention {
		errs = append(errs, fmt.Errorf("retention.audit %s: HIPAA (164.316(b)(2)) asks for at least six years (\"6y\"); phigate never deletes audit entries",
			FormatSpan(r.Audit.Duration)))
	}
	if r.PushStale.Duration < 24*time.Hour {
		errs = append(errs, fmt.Errorf("retention.push_stale %s: use at least 1d", FormatSpan(r.PushStale.Duration)))
	}
	if iv := r.PurgeInterval.Duration; iv < time.Minute || iv > 24*time.Hour {
		errs = append(errs, fmt.Errorf("retention.purge_interval %s: use 1m to 24h", iv))
	}
	if r.PurgeBatch < 1 || r.PurgeBatch > 10000 {
		errs = append(errs, fmt.Errorf("retention.purge_batch %d: use 1 to 10000", r.PurgeBatch))
	}
	return errors.Join(errs...)
}
