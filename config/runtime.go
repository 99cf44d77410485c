package config

import (
	"errors"
	"fmt"
	"os"
	"runtime/debug"
)

// Runtime tunes the Go runtime for serve (issue 12). The collector's CPU
// is about proportional to how often it runs: at Go's default (GOGC=100)
// it took 9 % of the gateway's CPU under SMTP load, at 400 about a
// quarter of that (docs/perf.md "Go's collector"). The memory limit is
// what keeps the larger heap bounded: near it the collector runs as often
// as it must, whatever gc_percent says.
type Runtime struct {
	// GCPercent is Go's GOGC: the heap may grow this many percent over
	// what was live after the last collection before the next one.
	GCPercent int `toml:"gc_percent"`
	// MemoryLimitBytes is Go's soft memory limit (GOMEMLIMIT); 0: none.
	MemoryLimitBytes int64 `toml:"memory_limit_bytes"`
}

// DefaultRuntime: 400 % with a 2 GiB soft limit. The limit leaves room
// for what the gateway holds at its busiest by design: the sign-in hashes
// (keys.max_concurrent_password_hashes x keys.password_memory_kib, 256 MiB
// by default), 2,000 SMTP sessions (about 110 MiB) and 10,000 open portal
// pages (about 0.7 GiB), with room over them; below what is live the
// collector would run nearly without pause.
func DefaultRuntime() Runtime {
	return Runtime{GCPercent: 400, MemoryLimitBytes: 2 << 30}
}

// validate also checks the limit against the sign-in hashes, the largest
// memory the gateway holds on purpose: a limit below them plus some room
// would keep the collector running nearly without pause under a flood.
func (r Runtime) validate(k Keys) error {
	if r.GCPercent < 50 || r.GCPercent > 2000 {
		return errors.New("runtime.gc_percent must be 50 to 2000")
	}
	if r.MemoryLimitBytes == 0 {
		return nil
	}
	if r.MemoryLimitBytes < 128<<20 {
		return errors.New("runtime.memory_limit_bytes must be 0 (no limit) or at least 134217728 (128 MiB)")
	}
	hashes := int64(max(k.MaxConcurrentPassword, 1)) * int64(k.PasswordMemoryKiB) << 10
	if need := hashes + 256<<20; r.MemoryLimitBytes < need {
		return fmt.Errorf("runtime.memory_limit_bytes %d is below the sign-in hashes' memory (keys.max_concurrent_password_hashes x keys.password_memory_kib = %d bytes) plus 256 MiB: use at least %d, or 0 for no limit",
			r.MemoryLimitBytes, hashes, need)
	}
	return nil
}

// Apply sets the collector's percentage and the soft memory limit, except
// where the environment's GOGC or GOMEMLIMIT already set them (Go reads
// those itself at start; an operator who sets them means it).
func (r Runtime) Apply() {
	if _, set := os.LookupEnv("GOGC"); !set {
		debug.SetGCPercent(r.GCPercent)
	}
	if _, set := os.LookupEnv("GOMEMLIMIT"); !set && r.MemoryLimitBytes > 0 {
		debug.SetMemoryLimit(r.MemoryLimitBytes)
	}
}
