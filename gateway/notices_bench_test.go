package gateway_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"github.com/phigate/phigate/config"
	"github.com/phigate/phigate/internal/e2e"
	"github.com/phigate/phigate/internal/smtppeer"
	"github.com/phigate/phigate/notify"
	"github.com/phigate/phigate/store"
)

// noticeTargets are where notices go in the notice benchmarks: the dev
// maildrop (two fsyncs per notice) and a real STARTTLS smarthost on
// loopback.
var noticeTargets = []string{"maildrop", "smarthost"}

func noticeGateway(b *testing.B, target string) *e2e.Harness {
	cfg := e2e.Config(b.TempDir())
	cfg.Log.Level = "warn"
	cfg.SMTP.Senders.MessagesPerHour, cfg.SMTP.Senders.ConcurrentTxns, cfg.SMTP.Senders.MaxStoredBytes = 0, 0, 0
	cfg.SMTP.MaxConnectionsPerIP = 64 // all 32 load connections come from 127.0.0.1
	if w := os.Getenv("BENCH_NOTICE_WORKERS"); w != "" {
		cfg.Smarthost.Connections, _ = strconv.Atoi(w)
	}
	if target == "smarthost" {
		peer := smtppeer.Start(b)
		cfg.Smarthost = config.Smarthost{Addr: peer.Addr, CAFile: peer.CAFile(b), MaxRetry: cfg.Smarthost.MaxRetry,
			Connections: cfg.Smarthost.Connections, ProbeInterval: cfg.Smarthost.ProbeInterval}
	}
	return e2e.Start(b, cfg)
}

// unsent is the outbox depth (notices not yet sent).
func unsent(b *testing.B, h *e2e.Harness) int {
	n, _, err := h.G.Store.OutboxStats(context.Background(), time.Now())
	if err != nil {
		b.Fatal(err)
	}
	return n
}

// sentNotices counts the notices sent so far.
func sentNotices(b *testing.B, h *e2e.Harness) int {
	var n int
	if err := h.G.Store.DB().QueryRow(`SELECT COUNT(*) FROM outbox WHERE sent_at IS NOT NULL`).Scan(&n); err != nil {
		b.Fatal(err)
	}
	return n
}

func waitDrained(b *testing.B, h *e2e.Harness) {
	for unsent(b, h) > 0 {
		time.Sleep(10 * time.Millisecond)
	}
}

// BenchmarkNoticesBacklog sends a backlog of b.N notices already in the
// outbox (as after a smarthost outage): run with -benchtime 10000x.
func BenchmarkNoticesBacklog(b *testing.B) {
	for _, target := range noticeTargets {
		b.Run(target, func(b *testing.B) {
			h := noticeGateway(b, target)
			now := time.Now()
			var d store.Delivery
			for i := 0; i < b.N; i++ {
				it, err := notify.NewItem(h.G.Keys, notify.KindNewMessage, notify.Notice{To: fmt.Sprintf("p%d@example.net", i),
					Link: h.BaseURL + "/login"}, "", "", now)
				if err != nil {
					b.Fatal(err)
				}
				d.Outbox = append(d.Outbox, it)
			}
			if err := h.G.Store.Deliver(context.Background(), d); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			h.G.Dispatcher.Kick()
			waitDrained(b, h)
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "notices/s")
		})
	}
}

// BenchmarkNoticesDuringIntake submits b.N messages of 20 KB over 32
// connections (as BenchmarkSMTPSubmit20KB) and counts the notices sent
// while they come in: notices/s out against msgs/s in, the backlog left
// when the last 250 arrives, and how long it takes to drain.
func BenchmarkNoticesDuringIntake(b *testing.B) {
	for _, target := range noticeTargets {
		b.Run(target, func(b *testing.B) {
			h := noticeGateway(b, target)
			pass := h.AddStaff(staff)
			raw := benchMessage(20 << 10)
			before := sentNotices(b, h)
			var n atomic.Int64
			b.ResetTimer()
			start := time.Now()
			var wg sync.WaitGroup
			for c := 0; c < 32; c++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					cl, err := smtp.DialStartTLS(h.SMTP, &tls.Config{InsecureSkipVerify: true})
					if err != nil {
						b.Error(err)
						return
					}
					defer cl.Close()
					if err := cl.Auth(sasl.NewPlainClient("", staff, pass)); err != nil {
						b.Error(err)
						return
					}
					for i := n.Add(1); i <= int64(b.N); i = n.Add(1) {
						if err := cl.SendMail(staff, []string{fmt.Sprintf("bench%d@example.net", i%50)}, bytes.NewReader(raw)); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			intake := time.Since(start)
			during, left := sentNotices(b, h)-before, unsent(b, h)
			waitDrained(b, h)
			drain := time.Since(start) - intake
			b.StopTimer()
			b.ReportMetric(float64(b.N)/intake.Seconds(), "msgs/s")
			b.ReportMetric(float64(during)/intake.Seconds(), "notices/s")
			b.ReportMetric(float64(left), "backlog")
			b.ReportMetric(drain.Seconds(), "drain-s")
		})
	}
}

// BenchmarkSmarthostRecovery: the smarthost is down while b.N notices
// fail their first attempt; it comes back; the time until every notice is
// sent is how long the recovery went unnoticed (at most about
// smarthost.probe_interval, 10 s) plus the sending.
func BenchmarkSmarthostRecovery(b *testing.B) {
	cfg := e2e.Config(b.TempDir())
	cfg.Log.Level = "warn"
	peer := smtppeer.Start(b)
	peer.Down()
	cfg.Smarthost = config.Smarthost{Addr: peer.Addr, CAFile: peer.CAFile(b), MaxRetry: cfg.Smarthost.MaxRetry,
		Connections: cfg.Smarthost.Connections, ProbeInterval: cfg.Smarthost.ProbeInterval}
	h := e2e.Start(b, cfg)
	var d store.Delivery
	for i := 0; i < b.N; i++ {
		it, err := notify.NewItem(h.G.Keys, notify.KindNewMessage, notify.Notice{To: fmt.Sprintf("p%d@example.net", i),
			Link: h.BaseURL + "/login"}, "", "", time.Now())
		if err != nil {
			b.Fatal(err)
		}
		d.Outbox = append(d.Outbox, it)
	}
	if err := h.G.Store.Deliver(context.Background(), d); err != nil {
		b.Fatal(err)
	}
	h.G.Dispatcher.Kick()
	for {
		var failed int
		if err := h.G.Store.DB().QueryRow(`SELECT COUNT(*) FROM outbox WHERE attempts > 0`).Scan(&failed); err != nil {
			b.Fatal(err)
		}
		if failed == b.N {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	b.ResetTimer()
	peer.Up()
	waitDrained(b, h)
	b.StopTimer()
	b.ReportMetric(b.Elapsed().Seconds(), "recovery-s")
}
