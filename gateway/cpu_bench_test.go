package gateway_test

import (
	"syscall"
	"testing"
	"time"
)

// cpuMeter reports the process's CPU time (user + system, every goroutine:
// intake, commit loop, notice dispatcher) per message of a benchmark. On a
// machine shared with other work, wall time per message depends on how much
// of the CPU the benchmark gets; CPU time per message much less so.
type cpuMeter struct{ start time.Duration }

func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// startCPU is called where the timer starts (after b.ResetTimer).
func startCPU(b *testing.B) cpuMeter { return cpuMeter{processCPU(b)} }

// report adds "cpu-ms/msg" (call after b.StopTimer).
func (m cpuMeter) report(b *testing.B) {
	used := processCPU(b) - m.start
	b.ReportMetric(float64(used)/float64(time.Millisecond)/float64(b.N), "cpu-ms/msg")
}
