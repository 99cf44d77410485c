package config

import (
	"strings"
	"testing"
)

// Issue 13.9: org.verify_url is printed and linked in every notice to a
// recipient, so only a web address is accepted; org.verify_phone is free
// text; both come from the environment too.
func TestOrgVerifySettings(t *testing.T) {
	for _, c := range []struct {
		url string
		ok  bool
	}{
		{"", true},
		{"https://clinic.example/secure-messages", true},
		{"http://clinic.example/check", true},
		{"javascript:alert(1)", false},
		{"clinic.example/check", false},
		{"https://", false},
	} {
		cfg := Default()
		cfg.Org.VerifyURL = c.url
		err := cfg.Validate()
		if bad := err != nil && strings.Contains(err.Error(), "org.verify_url"); bad == c.ok {
			t.Errorf("verify_url %q: %v, want accepted %v", c.url, err, c.ok)
		}
	}
	cfg := Default()
	if err := applyEnv(&cfg, []string{"PHIGATE_ORG_VERIFY_URL=https://clinic.example/v", "PHIGATE_ORG_VERIFY_PHONE=+1 555 0100"}); err != nil {
		t.Fatal(err)
	}
	if cfg.Org.VerifyURL != "https://clinic.example/v" || cfg.Org.VerifyPhone != "+1 555 0100" {
		t.Errorf("from the environment: %+v", cfg.Org)
	}
}
