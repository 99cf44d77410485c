package main

import (
	"strings"
	"testing"
)

// The image's health check is `phigate healthcheck URL` (no shell or curl
// in a distroless image): against a real `phigate serve` it exits 0 while
// the node is ready and 1 once it has stopped.
func TestHealthcheckCommand(t *testing.T) {
	p := startDev(t, t.TempDir())
	base := "https://" + p.HTTPS
	for _, path := range []string{"/healthz", "/readyz"} {
		r := runCLI(t, "", "healthcheck", base+path)
		if r.code != 0 {
			t.Fatalf("healthcheck %s: exit %d\nstdout: %s\nstderr: %s", path, r.code, r.stdout, r.stderr)
		}
		if !strings.HasPrefix(r.stdout, "200 ") {
			t.Errorf("healthcheck %s printed %q", path, r.stdout)
		}
	}
	if r := runCLI(t, "", "healthcheck", base+"/readyz"); !strings.Contains(r.stdout, `"status":"ready"`) ||
		!strings.Contains(r.stdout, `"database":"ok"`) || !strings.Contains(r.stdout, `"migrations":"ok"`) {
		t.Errorf("readyz body: %q", r.stdout)
	}
	// A page that is not 2xx (a redirect to sign in) is a failure.
	if r := runCLI(t, "", "healthcheck", base+"/inbox"); r.code != 1 {
		t.Errorf("healthcheck of a redirecting page: exit %d, want 1", r.code)
	}
	if r := runCLI(t, "", "healthcheck"); r.code != 2 {
		t.Errorf("healthcheck without a URL: exit %d, want 2", r.code)
	}
	p.stop()
	if r := runCLI(t, "", "healthcheck", "--timeout", "3s", base+"/healthz"); r.code != 1 {
		t.Errorf("healthcheck of a stopped node: exit %d, want 1\nstdout: %s", r.code, r.stdout)
	}
}
