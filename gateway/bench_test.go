package gateway_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"github.com/phigate/phigate/intake"
	"github.com/phigate/phigate/internal/e2e"
)

func benchMessage(size int) []byte {
	filler := bytes.Repeat([]byte("Lorem ipsum dolor sit amet, consectetur adipiscing elit. 0123456789\r\n"), size/70+1)
	return e2e.Multipart(staff, "Dr Lee", "bench@example.net", "Bench", string(filler[:size*3/4]), "<p>bench</p>",
		"scan.pdf", filler[:size/6])
}

// BenchmarkIntake20KB measures the intake path without the network: policy,
// sign + encrypt (body and summary), and one durable SQLite commit with its
// outbox notice, for one portal recipient. Parallel, as SMTP sessions are.
func BenchmarkIntake20KB(b *testing.B) {
	h := e2e.Start(b, e2e.Config(b.TempDir()))
	h.AddStaff(staff)
	ctx := context.Background()
	sender, err := h.G.Identity.UserByEmail(ctx, staff)
	if err != nil {
		b.Fatal(err)
	}
	raw := benchMessage(20 << 10)
	var n atomic.Int64
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	b.SetParallelism(16)
	b.ResetTimer()
	cpu := startCPU(b)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			rcpt := fmt.Sprintf("bench%d@example.net", n.Add(1)%50)
			if _, err := h.G.Intake.Accept(ctx, intake.Envelope{Sender: sender, From: staff, To: []string{rcpt}}, raw); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	cpu.report(b)
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

// BenchmarkSMTPSubmit20KB measures whole submissions over real loopback
// sockets: STARTTLS + AUTH once per connection, then MAIL/RCPT/DATA until the
// 250, from parallel connections.
func BenchmarkSMTPSubmit20KB(b *testing.B) {
	cfg := e2e.Config(b.TempDir())
	// One account sends everything here: lift its sending limits (issue
	// 8.5), which would otherwise answer 451 past 4 connections or 300
	// messages.
	cfg.SMTP.Senders.MessagesPerHour, cfg.SMTP.Senders.ConcurrentTxns, cfg.SMTP.Senders.MaxStoredBytes = 0, 0, 0
	// All 32 connections come from 127.0.0.1 (as in bench/ratio.sh).
	cfg.SMTP.MaxConnectionsPerIP = 64
	h := e2e.Start(b, cfg)
	pass := h.AddStaff(staff)
	raw := benchMessage(20 << 10)
	var n atomic.Int64
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	// 16 sessions per GOMAXPROCS: 32 connections on 2 cores, like the
	// Postfix comparison in docs/perf.md.
	b.SetParallelism(16)
	b.ResetTimer()
	cpu := startCPU(b)
	b.RunParallel(func(pb *testing.PB) {
		c, err := smtp.DialStartTLS(h.SMTP, &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			b.Error(err)
			return
		}
		defer c.Close()
		if err := c.Auth(sasl.NewPlainClient("", staff, pass)); err != nil {
			b.Error(err)
			return
		}
		for pb.Next() {
			rcpt := fmt.Sprintf("bench%d@example.net", n.Add(1)%50)
			if err := c.SendMail(staff, []string{rcpt}, bytes.NewReader(raw)); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	cpu.report(b)
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}
