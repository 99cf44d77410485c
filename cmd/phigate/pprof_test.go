package main

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

func httpStatus(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// serve --debug-pprof mounts the profiler on the loopback metrics listener
// only; without the flag the same paths are 404; on a non-loopback metrics
// address serve refuses to start, even with metrics.allow_remote.
func TestServeDebugPprof(t *testing.T) {
	on := startProc(t, childEnv(), "serve", "--dev", "--data", t.TempDir(), "--debug-pprof",
		"--smtp", "127.0.0.1:0", "--smtps", "127.0.0.1:0", "--http", "127.0.0.1:0", "--metrics", "127.0.0.1:0")
	on.waitBanner()
	if !strings.Contains(on.stdout.String(), "http://"+on.Metrics+"/debug/pprof/") {
		t.Errorf("the banner does not name the profiler:\n%s", on.stdout.String())
	}
	if code, body := httpStatus(t, "http://"+on.Metrics+"/debug/pprof/"); code != 200 || !strings.Contains(body, "heap") {
		t.Errorf("GET /debug/pprof/ with --debug-pprof = %d\n%.300s", code, body)
	}
	if code, body := httpStatus(t, "http://"+on.Metrics+"/debug/pprof/allocs"); code != 200 || !strings.HasPrefix(body, "\x1f\x8b") {
		t.Errorf("GET /debug/pprof/allocs = %d, %d bytes, not a profile", code, len(body))
	}
	on.stop()

	off := startDev(t, t.TempDir())
	if code, _ := httpStatus(t, "http://"+off.Metrics+"/debug/pprof/"); code != http.StatusNotFound {
		t.Errorf("GET /debug/pprof/ without --debug-pprof = %d, want 404", code)
	}
	if code, _ := httpStatus(t, "http://"+off.Metrics+"/metrics"); code != 200 {
		t.Errorf("GET /metrics = %d", code)
	}
	off.stop()

	bad := startProc(t, childEnv("PHIGATE_METRICS_ALLOW_REMOTE=true"), "serve", "--dev", "--data", t.TempDir(), "--debug-pprof",
		"--smtp", "127.0.0.1:0", "--smtps", "127.0.0.1:0", "--http", "127.0.0.1:0", "--metrics", "0.0.0.0:0")
	bad.waitExit()
	if bad.exitCode() == 0 || !strings.Contains(bad.stderr(), "profiler") {
		t.Errorf("serve --debug-pprof --metrics 0.0.0.0:0 exited %d\n%s", bad.exitCode(), bad.tail())
	}
}
