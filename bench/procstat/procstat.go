// Package procstat reads what a process holds (resident memory, open file
// descriptors) from /proc, for the bench tools that measure the gateway's
// cost per held connection.
package procstat

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Sample is one reading; OK is false when nothing was measured.
type Sample struct {
	OK     bool
	RSSKiB int64
	FDs    int
}

func (p Sample) String() string {
	if !p.OK {
		return "(no -pid: not measured)"
	}
	return fmt.Sprintf("RSS %.1f MiB, %d open fds", float64(p.RSSKiB)/1024, p.FDs)
}

// Read samples process pid; pid 0 (or an unreadable process) gives a
// Sample with OK false.
func Read(pid int) Sample {
	if pid == 0 {
		return Sample{}
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return Sample{}
	}
	var p Sample
	for _, line := range strings.Split(string(status), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			p.RSSKiB, _ = strconv.ParseInt(f[1], 10, 64)
		}
	}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return Sample{}
	}
	p.FDs, p.OK = len(fds), true
	return p
}
