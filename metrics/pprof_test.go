package metrics

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
)

// get fetches url and returns its status and body.
func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}

func TestPprofServedWhenOn(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ln, err := Serve(ctx, "127.0.0.1:0", false, New(), WithPprof(true))
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + ln.Addr().String()
	if code, body := get(t, base+"/debug/pprof/"); code != 200 || !strings.Contains(body, "goroutine") {
		t.Fatalf("GET /debug/pprof/ = %d\n%.300s", code, body)
	}
	// A named profile in the binary format pprof reads (gzip-compressed).
	code, body := get(t, base+"/debug/pprof/heap")
	if code != 200 || !strings.HasPrefix(body, "\x1f\x8b") {
		t.Fatalf("GET /debug/pprof/heap = %d, %d bytes, not a gzip profile", code, len(body))
	}
	code, body = get(t, base+"/debug/pprof/profile?seconds=1")
	if code != 200 || !strings.HasPrefix(body, "\x1f\x8b") {
		t.Fatalf("GET /debug/pprof/profile = %d, %d bytes: %.200s", code, len(body), body)
	}
	// A profile is bounded: a longer one is refused at once.
	for _, p := range []string{"/debug/pprof/profile?seconds=120", "/debug/pprof/trace?seconds=61", "/debug/pprof/profile?seconds=x"} {
		if code, _ := get(t, base+p); code != http.StatusBadRequest {
			t.Errorf("GET %s = %d, want 400", p, code)
		}
	}
	if code, _ := get(t, base+"/metrics"); code != 200 {
		t.Errorf("GET /metrics = %d beside the profiler", code)
	}
	cancel()
	waitClosed(t, ln)
}

func TestPprofNotFoundWhenOff(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ln, err := Serve(ctx, "127.0.0.1:0", false, New(), WithPprof(false))
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + ln.Addr().String()
	for _, p := range []string{"/debug/pprof/", "/debug/pprof/heap", "/debug/pprof/profile?seconds=1", "/debug/pprof/cmdline"} {
		if code, _ := get(t, base+p); code != http.StatusNotFound {
			t.Errorf("GET %s = %d with the profiler off, want 404", p, code)
		}
	}
	if code, _ := get(t, base+"/metrics"); code != 200 {
		t.Errorf("GET /metrics = %d", code)
	}
	cancel()
	waitClosed(t, ln)
}

// The profiler stays on loopback even where metrics.allow_remote lets the
// metrics themselves listen elsewhere.
func TestPprofRefusedOffLoopback(t *testing.T) {
	ctx := t.Context()
	for _, allow := range []bool{false, true} {
		for _, addr := range []string{":0", "0.0.0.0:0", "[::]:0", "192.0.2.10:0", "10.0.0.1:0"} {
			ln, err := Serve(ctx, addr, allow, New(), WithPprof(true))
			if err == nil {
				ln.Close()
				t.Errorf("Serve(%q, allow_remote=%v, pprof) listened", addr, allow)
				continue
			}
			if allow && !strings.Contains(err.Error(), "profiler") {
				t.Errorf("Serve(%q, allow_remote) refused without naming the profiler: %v", addr, err)
			}
		}
	}
	// The same address without the profiler is allowed when asked.
	ctx2, cancel := context.WithCancel(context.Background())
	defer cancel()
	ln, err := Serve(ctx2, "0.0.0.0:0", true, New(), WithPprof(false))
	if err != nil {
		t.Fatalf("Serve(0.0.0.0:0, allow, no pprof): %v", err)
	}
	cancel()
	waitClosed(t, ln)
}
