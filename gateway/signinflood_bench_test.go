package gateway_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/phigate/phigate/config"
	"github.com/phigate/phigate/internal/e2e"
)

// BenchmarkSignIn1000Flood (issue 12, goal 3; figures in docs/perf.md,
// "Sign-in under attack"): 1,000 sign-in attempts at once, with the
// production Argon2id parameters (t=3, 64 MiB, 2 threads) and hash queue
// settings, from 1, 50 or 1,000 loopback addresses (each address's
// attempts on up to 250 connections at once, under portal.max_conns_per_ip:
// from one address 250 are in flight and the rest follow as answers come),
// for accounts that do not exist (they take the same queued hash as real
// ones). Meanwhile a
// legitimate user signs in from 127.0.0.1 every 500 ms until the flood has
// been answered. In the device-cookie rows (issue 12.3) the user first
// signs in fully (password, then the second factor) from the same
// browser, which gives it a device cookie, and sends that cookie with each
// attempt during the flood: its hash goes in the priority lane. Reported:
//   - peak-rss-MiB / peak-heap-MiB: the highest resident memory (VmHWM,
//     reset before the flood) and Go heap in use of this process, which
//     holds the gateway and the flood's clients; base-*: the same before;
//   - ok/busy-429/throttled-429/bad-401/other: how the flood was answered
//     (busy: no hash slot in time or the queue full; throttled: the
//     address's budget spent, refused before any hash);
//   - hashed: flood attempts that got a hash (answered 401);
//   - legit-ok / legit-429: the legitimate user's attempts during the
//     flood that succeeded and that were told to come back (busy);
//     legit-p50-s / legit-max-s: the successful ones' latency (TLS
//     handshake included, as for a browser's first request); first-ok-s:
//     from the flood's first request to the user's first success (-1: none
//     while the flood lasted). After the flood the user must get in;
//   - flood-s: from the first flood request to the last answer.
func BenchmarkSignIn1000Flood(b *testing.B) {
	const n = 1000
	for _, run := range []struct {
		addrs, slots int
		device       bool
	}{{1000, 4, false}, {50, 4, false}, {1, 4, false}, {1000, 1, false}, {1000, 4, true}, {50, 4, true}, {1000, 1, true}} {
		name := fmt.Sprintf("from-%d-addresses/slots-%d", run.addrs, run.slots)
		if run.device {
			name += "-device-cookie"
		}
		b.Run(name, func(b *testing.B) {
			e2e.Silence()
			cfg := e2e.Config(b.TempDir())
			cfg.Log.Level = "warn"
			cfg.Keys.MaxConcurrentPassword = run.slots
			def := config.Default().Keys
			cfg.Keys.PasswordTime, cfg.Keys.PasswordMemoryKiB, cfg.Keys.PasswordThreads = def.PasswordTime, def.PasswordMemoryKiB, def.PasswordThreads
			h := e2e.Start(b, cfg)
			h.AddStaff(staff)
			const user, right = staff, "staff portal password 123"
			var device *http.Cookie // the user's device cookie, in the device-cookie rows
			if run.device {
				device = deviceCookieOf(b, h, user, right)
			}
			var codes sync.Map // "status/code" -> *atomic.Int64
			count := func(k string) {
				v, _ := codes.LoadOrStore(k, new(atomic.Int64))
				v.(*atomic.Int64).Add(1)
			}
			var legit []time.Duration // the legitimate sign-ins that succeeded
			var legitBusy int         // and those answered 429
			var firstOK time.Duration // from the flood's start to the first success
			var peakRSS, peakHeap, baseRSS, baseHeap float64
			var floodTime time.Duration
			b.ResetTimer()
			for round := range b.N {
				runtime.GC()
				baseRSS, baseHeap = vmKiB("VmRSS")/1024, heapInUseMiB()
				resetPeakRSS(b)
				// Fresh addresses each round, so the per-address budget of
				// one round does not end the next early.
				clients := make([]*http.Client, run.addrs)
				for a := range clients {
					per := n / run.addrs
					clients[a] = fromAddr(fmt.Sprintf("127.%d.%d.%d", 10+round, a/200, 10+a%200), min(per, 250)) // under portal.max_conns_per_ip (256)
				}
				stopSample := make(chan struct{})
				sampled := make(chan float64)
				go func() { // the Go heap's high-water mark, every 5 ms
					peak := 0.0
					t := time.NewTicker(5 * time.Millisecond)
					defer t.Stop()
					for {
						select {
						case <-stopSample:
							sampled <- peak
							return
						case <-t.C:
							peak = max(peak, heapInUseMiB())
						}
					}
				}()
				var wg sync.WaitGroup
				start := time.Now()
				for i := range n {
					hc := clients[i%run.addrs]
					wg.Go(func() { count(floodSignIn(hc, h.BaseURL, fmt.Sprintf("flood%d-%d@example.net", round, i))) })
				}
				done := make(chan struct{})
				go func() { wg.Wait(); floodTime = time.Since(start); close(done) }()
				// The legitimate user, from its own address, every 500 ms
				// while the flood lasts (a new connection each time), as a
				// person told "try again in a moment" would.
				time.Sleep(200 * time.Millisecond)
				firstOK = -1
				for flooding := true; flooding; {
					hc := fromAddr("127.0.0.1", 1)
					t0 := time.Now()
					st := signInDevice(hc, h.BaseURL, user, right, device)
					d := time.Since(t0)
					hc.CloseIdleConnections()
					switch st {
					case http.StatusOK:
						legit = append(legit, d)
						if firstOK < 0 {
							firstOK = time.Since(start)
						}
					case http.StatusTooManyRequests:
						legitBusy++
					default:
						b.Fatalf("legitimate sign-in during the flood: %d", st)
					}
					select {
					case <-done:
						flooding = false
					case <-time.After(500 * time.Millisecond):
					}
				}
				close(stopSample)
				peakHeap = <-sampled
				peakRSS = vmKiB("VmHWM") / 1024
				for _, hc := range clients {
					hc.CloseIdleConnections()
				}
				// Once the flood has been answered, the user gets in.
				if st := signInDevice(fromAddr("127.0.0.1", 1), h.BaseURL, user, right, device); st != http.StatusOK {
					b.Fatalf("legitimate sign-in after the flood: %d", st)
				}
			}
			b.StopTimer()
			get := func(k string) float64 {
				if v, ok := codes.Load(k); ok {
					return float64(v.(*atomic.Int64).Load()) / float64(b.N)
				}
				return 0
			}
			other := float64(n)
			codes.Range(func(k, v any) bool {
				switch k {
				case "200", "401/bad_credentials", "429/busy", "429/throttled":
					other -= float64(v.(*atomic.Int64).Load()) / float64(b.N)
				default:
					b.Logf("flood answer %s: %d", k, v.(*atomic.Int64).Load())
				}
				return true
			})
			b.ReportMetric(baseRSS, "base-rss-MiB")
			b.ReportMetric(peakRSS, "peak-rss-MiB")
			b.ReportMetric(baseHeap, "base-heap-MiB")
			b.ReportMetric(peakHeap, "peak-heap-MiB")
			b.ReportMetric(get("429/busy"), "busy-429")
			b.ReportMetric(get("429/throttled"), "throttled-429")
			b.ReportMetric(get("401/bad_credentials"), "hashed")
			b.ReportMetric(other, "other")
			if len(legit) > 0 {
				b.ReportMetric(pct(legit, 0.5).Seconds(), "legit-p50-s")
				b.ReportMetric(pct(legit, 1).Seconds(), "legit-max-s")
			}
			b.ReportMetric(float64(len(legit))/float64(b.N), "legit-ok")
			b.ReportMetric(float64(legitBusy)/float64(b.N), "legit-429")
			b.ReportMetric(firstOK.Seconds(), "first-ok-s")
			b.ReportMetric(floodTime.Seconds(), "flood-s")
		})
	}
}

// deviceCookieOf signs the staff user in fully from one browser (password,
// second-factor enrolment, then a second sign-in with a code) and returns
// the device cookie that browser got for the API's sign-in path.
func deviceCookieOf(b *testing.B, h *e2e.Harness, user, password string) *http.Cookie {
	c := h.Client()
	now := time.Now()
	c.JSON("POST", "/api/v1/login", map[string]string{"email": user, "password": password}, 200, nil)
	secret, _ := c.EnrolTOTP(now)
	c.JSON("POST", "/api/v1/login", map[string]string{"email": user, "password": password}, 200, nil)
	c.JSON("POST", "/api/v1/login/2fa", map[string]string{"code": e2e.TOTPCode(b, secret, now.Add(30*time.Second))}, 200, nil)
	u, _ := url.Parse(h.BaseURL + "/api/v1/login")
	for _, ck := range c.HTTP.Jar.Cookies(u) {
		if ck.Name == "__Secure-phigate-device" {
			return ck
		}
	}
	b.Fatal("no device cookie after a full sign-in")
	return nil
}

// signInDevice is signIn with the device cookie dc (nil: none).
func signInDevice(hc *http.Client, base, email, password string, dc *http.Cookie) int {
	body, _ := json.Marshal(map[string]string{"email": email, "password": password})
	req, err := http.NewRequest("POST", base+"/api/v1/login", bytes.NewReader(body))
	if err != nil {
		return 0
	}
	req.Header.Set("Content-Type", "application/json")
	if dc != nil {
		req.AddCookie(&http.Cookie{Name: dc.Name, Value: dc.Value})
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// floodSignIn posts one API sign-in and returns "status/error code" (or
// "error" if the request failed).
func floodSignIn(hc *http.Client, base, email string) string {
	body, _ := json.Marshal(map[string]string{"email": email, "password": "a guess 1234"})
	resp, err := hc.Post(base+"/api/v1/login", "application/json", bytes.NewReader(body))
	if err != nil {
		return "error"
	}
	defer resp.Body.Close()
	var e struct {
		Error string `json:"error"`
	}
	b, _ := io.ReadAll(resp.Body)
	_ = json.Unmarshal(b, &e)
	if e.Error == "" {
		return strconv.Itoa(resp.StatusCode)
	}
	return strconv.Itoa(resp.StatusCode) + "/" + e.Error
}

func heapInUseMiB() float64 {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return float64(m.HeapInuse) / (1 << 20)
}

// vmKiB reads a field of /proc/self/status in KiB.
func vmKiB(field string) float64 {
	b, _ := os.ReadFile("/proc/self/status")
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == field+":" {
			v, _ := strconv.ParseFloat(f[1], 64)
			return v
		}
	}
	return 0
}

// resetPeakRSS sets VmHWM back to the current RSS (Linux, clear_refs 5).
func resetPeakRSS(b *testing.B) {
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
		b.Logf("cannot reset the peak RSS (%v): peak-rss-MiB includes the set-up", err)
	}
}
