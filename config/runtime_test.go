package config

import (
	"os"
	"runtime/debug"
	"strings"
	"testing"
)

func TestRuntimeSettings(t *testing.T) {
	c, err := Load("", []string{"PHIGATE_RUNTIME_GC_PERCENT=250", "PHIGATE_RUNTIME_MEMORY_LIMIT_BYTES=805306368"})
	if err == nil {
		c.Fill()
		err = c.Validate()
	}
	if err != nil {
		t.Fatal(err)
	}
	if c.Runtime.GCPercent != 250 || c.Runtime.MemoryLimitBytes != 768<<20 {
		t.Errorf("runtime %+v", c.Runtime)
	}
	if d := Default().Runtime; d.GCPercent != 400 || d.MemoryLimitBytes != 2<<30 {
		t.Errorf("defaults %+v", d)
	}
	for _, tc := range []struct {
		env, want string
	}{
		{"PHIGATE_RUNTIME_GC_PERCENT=10", "runtime.gc_percent must be 50 to 2000"},
		{"PHIGATE_RUNTIME_MEMORY_LIMIT_BYTES=1000", "at least 134217728"},
		// 8 hashes of 256 MiB need 2 GiB + 256 MiB.
		{"PHIGATE_KEYS_PASSWORD_MEMORY_KIB=262144 PHIGATE_KEYS_MAX_CONCURRENT_PASSWORD_HASHES=8", "use at least 2415919104"},
	} {
		c, err := Load("", strings.Fields(tc.env))
		if err == nil {
			c.Fill()
			err = c.Validate()
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err %v, want %q", tc.env, err, tc.want)
		}
	}
	// No limit at all is allowed whatever the hashes need.
	c, err = Load("", []string{"PHIGATE_RUNTIME_MEMORY_LIMIT_BYTES=0", "PHIGATE_KEYS_PASSWORD_MEMORY_KIB=262144", "PHIGATE_KEYS_MAX_CONCURRENT_PASSWORD_HASHES=8"})
	if err == nil {
		c.Fill()
		err = c.Validate()
	}
	if err != nil {
		t.Error(err)
	}
}

// Apply leaves what the environment's GOGC / GOMEMLIMIT set alone.
func TestRuntimeApplyYieldsToEnvironment(t *testing.T) {
	oldPct := debug.SetGCPercent(100)
	oldLim := debug.SetMemoryLimit(-1)
	defer func() { debug.SetGCPercent(oldPct); debug.SetMemoryLimit(oldLim) }()

	t.Setenv("GOGC", "150")
	t.Setenv("GOMEMLIMIT", "2GiB")
	debug.SetGCPercent(150)
	before := debug.SetMemoryLimit(-1)
	Runtime{GCPercent: 400, MemoryLimitBytes: 1 << 30}.Apply()
	if got := debug.SetGCPercent(150); got != 150 {
		t.Errorf("GOGC set: gc percent %d, want the environment's 150", got)
	}
	if got := debug.SetMemoryLimit(-1); got != before {
		t.Errorf("GOMEMLIMIT set: limit %d, want %d", got, before)
	}
}

func TestRuntimeApply(t *testing.T) {
	oldPct := debug.SetGCPercent(100)
	oldLim := debug.SetMemoryLimit(-1)
	defer func() { debug.SetGCPercent(oldPct); debug.SetMemoryLimit(oldLim) }()
	if v, ok := os.LookupEnv("GOGC"); ok {
		t.Skipf("GOGC=%s is set in this test's environment", v)
	}
	if v, ok := os.LookupEnv("GOMEMLIMIT"); ok {
		t.Skipf("GOMEMLIMIT=%s is set in this test's environment", v)
	}
	Runtime{GCPercent: 400, MemoryLimitBytes: 1 << 30}.Apply()
	if got := debug.SetGCPercent(100); got != 400 {
		t.Errorf("gc percent %d, want 400", got)
	}
	if got := debug.SetMemoryLimit(-1); got != 1<<30 {
		t.Errorf("memory limit %d, want 1 GiB", got)
	}
}
