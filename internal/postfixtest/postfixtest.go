// Package postfixtest runs a private Postfix instance for interop tests: its
// own configuration, queue and data directories under the test's temp
// folder, loopback only, its log in a file, stopped when the test ends (by
// its own master pid, never by name).
package postfixtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/phigate/phigate/internal/testtool"
)

// Instance is one running private Postfix.
type Instance struct {
	t    testing.TB
	Base string // the instance's folder (0711, so Postfix's users can reach files in it)
	Dir  string // config_directory: main.cf, master.cf
	QDir string // queue_directory
	Log  string // maillog_file
}

// Options describe the instance. MainCF and MasterCF are appended to the
// common settings (paths, names, loopback, no DNS, no local delivery) and to
// Postfix's internal services.
type Options struct {
	MainCF   string
	MasterCF string
	// Files are written into Base before Postfix starts (name → content),
	// readable by Postfix's own users.
	Files map[string]string
}

// New makes the instance's folders; call Start after writing what its
// configuration refers to under Base.
func New(t testing.TB) *Instance {
	t.Helper()
	testtool.Need(t, "postfix")
	base := t.TempDir()
	// Postfix opens some files (data_directory/master.lock) after dropping
	// to mail_owner, so the 0700 temp directories must be searchable.
	for _, d := range []string{filepath.Dir(base), base} {
		if err := os.Chmod(d, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	p := &Instance{t: t, Base: base, Dir: filepath.Join(base, "etc"), QDir: filepath.Join(base, "queue"),
		Log: filepath.Join(base, "maillog")}
	for _, d := range []string{p.Dir, p.QDir} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

// Start writes the configuration and starts Postfix.
func (p *Instance) Start(o Options) {
	p.t.Helper()
	for name, content := range o.Files {
		p.WriteFile(name, content, 0o644)
	}
	name := make([]byte, 4)
	rand.Read(name)
	p.WriteFile("etc/main.cf", fmt.Sprintf(commonMainCF, p.QDir, filepath.Join(p.Base, "data"),
		"phigate-test-postfix-"+hex.EncodeToString(name), p.Log, p.Base)+o.MainCF, 0o644)
	p.WriteFile("etc/master.cf", internalServices+o.MasterCF, 0o644)
	// "postfix check" (post-install create-missing) creates the queue
	// subdirectories and data_directory with mail_owner and the right modes.
	p.Run("postfix", "-c", p.Dir, "check")
	p.t.Cleanup(p.stop)
	p.Run("postfix", "-c", p.Dir, "start")
	p.t.Cleanup(func() {
		if p.t.Failed() {
			p.t.Logf("Postfix log (%s):\n%s\nPostfix queue:\n%s", p.Log, p.ReadLog(), p.Queue())
		}
	})
}

// WriteFile writes name (relative to Base) with mode.
func (p *Instance) WriteFile(name, content string, mode os.FileMode) {
	p.t.Helper()
	path := filepath.Join(p.Base, name)
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		p.t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil { // umask-proof
		p.t.Fatal(err)
	}
}

// FreePort returns a loopback port nothing listens on now, for a Postfix
// listener (Postfix cannot listen on port 0 and report the port).
func FreePort(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(l.Addr().String())
	l.Close()
	return port
}

// WaitListening waits until addr accepts connections.
func (p *Instance) WaitListening(addr string, d time.Duration) {
	p.t.Helper()
	deadline := time.Now().Add(d)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("Postfix does not listen on %s within %v: %v\n%s", addr, d, err, p.ReadLog())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Run runs a Postfix command (bounded) and fails the test if it fails.
func (p *Instance) Run(name string, args ...string) string {
	p.t.Helper()
	out, err := p.Cmd(nil, name, args...)
	if err != nil {
		p.t.Fatalf("%s %s: %v\n%s\nPostfix log:\n%s", name, strings.Join(args, " "), err, out, p.ReadLog())
	}
	return out
}

// Cmd runs a command with this instance's MAIL_CONFIG.
func (p *Instance) Cmd(stdin []byte, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := exec.CommandContext(ctx, name, args...)
	c.Env = append(os.Environ(), "MAIL_CONFIG="+p.Dir)
	if stdin != nil {
		c.Stdin = bytes.NewReader(stdin)
	}
	out, err := c.CombinedOutput()
	return string(out), err
}

// ReadLog returns Postfix's log so far.
func (p *Instance) ReadLog() string {
	b, _ := os.ReadFile(p.Log)
	return string(b)
}

// Queue lists Postfix's queue (postqueue -p).
func (p *Instance) Queue() string {
	out, err := p.Cmd(nil, "postqueue", "-c", p.Dir, "-p")
	if err != nil {
		return fmt.Sprintf("postqueue -p: %v\n%s", err, out)
	}
	return out
}

// stop stops Postfix and makes sure its master process is gone.
func (p *Instance) stop() {
	pid := 0
	if b, err := os.ReadFile(filepath.Join(p.QDir, "pid", "master.pid")); err == nil {
		pid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
	}
	if out, err := p.Cmd(nil, "postfix", "-c", p.Dir, "stop"); err != nil && pid != 0 {
		p.t.Logf("postfix stop: %v\n%s", err, out)
	}
	if pid <= 1 {
		return
	}
	for i := 0; i < 50 && syscall.Kill(pid, 0) == nil; i++ {
		time.Sleep(100 * time.Millisecond)
	}
	if syscall.Kill(pid, 0) == nil {
		p.t.Logf("Postfix master %d still running; killing its process group", pid)
		syscall.Kill(-pid, syscall.SIGKILL)
		syscall.Kill(pid, syscall.SIGKILL)
	}
}

// commonMainCF: paths and names (queue_directory, data_directory,
// syslog_name, maillog_file, maillog_file_prefixes), loopback only, no DNS,
// no local delivery.
const commonMainCF = `compatibility_level = 3.6
queue_directory = %s
data_directory = %s
syslog_name = %s
maillog_file = %s
maillog_file_prefixes = %s
mail_owner = postfix
setgid_group = postdrop
mydomain = clinic.example
myorigin = $mydomain
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mydestination =
relay_domains =
local_transport = error:5.1.1 local delivery is disabled
alias_maps =
alias_database =
local_recipient_maps =
biff = no
smtp_dns_support_level = disabled
smtp_bind_address = 127.0.0.1
smtp_connect_timeout = 10s
`

// internalServices are the services every instance needs; nothing is
// chrooted (the queue lives under the test's temp folder) and nothing
// listens unless the caller's MasterCF adds a listener.
const internalServices = `# service type  private unpriv  chroot  wakeup  maxproc command
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
`
