package config

import (
	"path/filepath"
	"strings"
	"testing"
)

// The DKIM signing domain defaults to notify_from's domain and the key
// file to the data folder; a selector that is no DNS label is refused.
func TestDKIMDefaults(t *testing.T) {
	c := Default()
	c.Org.NotifyFrom = "No-Reply@Notices.Riverside.Example"
	c.Fill()
	if c.DKIM.Domain != "notices.riverside.example" || c.DKIM.Selector != "phigate" {
		t.Errorf("dkim %+v", c.DKIM)
	}
	if c.Keys.DKIMKeyFile != filepath.Join(c.Server.DataDir, "dkim-key.wrapped") {
		t.Errorf("dkim_key_file %q", c.Keys.DKIMKeyFile)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	set := Default()
	set.DKIM.Domain = "riverside.example"
	set.Fill()
	if set.DKIM.Domain != "riverside.example" {
		t.Errorf("a configured domain was replaced: %q", set.DKIM.Domain)
	}
	for _, bad := range []string{"", "two words", "a;b"} {
		c.DKIM.Selector = bad
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "dkim.selector") {
			t.Errorf("selector %q: %v", bad, err)
		}
	}
}
