package config

import (
	"strings"
	"testing"
	"time"
)

func TestParseSpan(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"90d": 90 * 24 * time.Hour, "6y": 6 * Year, "2w": 14 * 24 * time.Hour, "36h": 36 * time.Hour, " 1d ": 24 * time.Hour,
	} {
		if got, err := ParseSpan(in); err != nil || got != want {
			t.Errorf("ParseSpan(%q) = %s, %v; want %s", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "d", "-3d", "1.5y", "90 days", "forever", "-1h", "400y"} {
		if d, err := ParseSpan(bad); err == nil {
			t.Errorf("ParseSpan(%q) = %s, want an error", bad, d)
		}
	}
	for _, d := range []time.Duration{6 * Year, 180 * 24 * time.Hour, 90 * time.Minute} {
		if back, err := ParseSpan(FormatSpan(d)); err != nil || back != d {
			t.Errorf("FormatSpan(%s) = %q reads back as %s, %v", d, FormatSpan(d), back, err)
		}
	}
}

// Issue 14.4: an audit retention under six years is refused at load.
func TestRetentionSettings(t *testing.T) {
	d := Default()
	if r := d.Retention; r.Audit.Duration != 6*Year || r.PushStale.Duration != 180*24*time.Hour ||
		r.PurgeInterval.Duration != time.Hour || r.PurgeBatch != 100 {
		t.Errorf("defaults: %+v", r)
	}
	c, err := Load(writeTOML(t, "[retention]\naudit = \"7y\"\npush_stale = \"90d\"\npurge_interval = \"15m\"\npurge_batch = 200\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if r := c.Retention; r.Audit.Duration != 7*Year || r.PushStale.Duration != 90*24*time.Hour || r.PurgeInterval.Duration != 15*time.Minute || r.PurgeBatch != 200 {
		t.Errorf("file not applied: %+v", r)
	}
	c, err = Load("", []string{"PHIGATE_RETENTION_AUDIT=10y"})
	if err != nil || c.Retention.Audit.Duration != 10*Year {
		t.Errorf("env: %v, %v", c.Retention.Audit, err)
	}
	for _, tc := range []struct {
		file, want string
	}{
		{"[retention]\naudit = \"5y\"\n", "retention.audit 5y: HIPAA (164.316(b)(2)) asks for at least six years"},
		{"[retention]\naudit = \"2000d\"\n", "retention.audit 2000d"},
		{"[retention]\npush_stale = \"1h\"\n", "retention.push_stale"},
		{"[retention]\npurge_interval = \"48h\"\n", "retention.purge_interval"},
		{"[retention]\npurge_batch = 0\n", "retention.purge_batch"},
	} {
		c, err := Load(writeTOML(t, tc.file), nil)
		if err == nil {
			err = c.Validate()
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: got %v, want %q", tc.file, err, tc.want)
		}
	}
	if _, err := Load(writeTOML(t, "[retention]\naudit = \"six years\"\n"), nil); err == nil {
		t.Error("an unreadable period loaded")
	}
}
