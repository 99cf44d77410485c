// Package deploy_test checks the container deployment files at the
// repository root and in deploy/ (docker-compose.yml, Dockerfile,
// deploy/phigate.toml, deploy/haproxy.cfg, deploy/make-secrets.sh) against
// what docs/deploy.md describes, with the real tools where this machine has
// them. There is no Docker engine here: nothing is run in a container.
package deploy_test

import (
	"bufio"
	"context"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/phigate/phigate/config"
	"github.com/phigate/phigate/internal/testtool"
	"github.com/phigate/phigate/keys"
	"github.com/phigate/phigate/store"
	"go.yaml.in/yaml/v3"
)

const root = ".."

// compose is the part of docker-compose.yml the checks read.
type compose struct {
	Services map[string]service `yaml:"services"`
	Networks map[string]struct {
		Internal bool `yaml:"internal"`
	} `yaml:"networks"`
	Volumes map[string]any `yaml:"volumes"`
	Secrets map[string]struct {
		File string `yaml:"file"`
	} `yaml:"secrets"`
}

type service struct {
	Image       string            `yaml:"image"`
	Build       any               `yaml:"build"`
	Restart     string            `yaml:"restart"`
	User        string            `yaml:"user"`
	Command     any               `yaml:"command"`
	Ports       []string          `yaml:"ports"`
	Secrets     []string          `yaml:"secrets"`
	Volumes     []string          `yaml:"volumes"`
	Networks    []string          `yaml:"networks"`
	Environment map[string]string `yaml:"environment"`
	DependsOn   map[string]struct {
		Condition string `yaml:"condition"`
	} `yaml:"depends_on"`
	Healthcheck *struct {
		Test []string `yaml:"test"`
	} `yaml:"healthcheck"`
}

func readCompose(t *testing.T) compose {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var c compose
	if err := yaml.Unmarshal(b, &c); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	return c
}

var phigateNodes = []string{"phigate1", "phigate2"}

// The services, ports, secrets, health checks and restart policies that
// docs/deploy.md describes.
func TestComposeServices(t *testing.T) {
	c := readCompose(t)
	want := []string{"phigate1", "phigate2", "lb", "postgres", "redis", "mail"}
	for _, name := range want {
		s, ok := c.Services[name]
		if !ok {
			t.Errorf("service %s missing", name)
			continue
		}
		if s.Restart != "unless-stopped" {
			t.Errorf("%s: restart %q, want unless-stopped", name, s.Restart)
		}
		if s.Healthcheck == nil && name != "mail" { // Mailpit's image has its own HEALTHCHECK
			t.Errorf("%s: no healthcheck", name)
		}
	}
	if len(c.Services) != len(want) {
		t.Errorf("services %v, want exactly %v", keys_(c.Services), want)
	}
	for _, name := range phigateNodes {
		s := c.Services[name]
		if s.Image != "phigate:local" || s.Build == nil {
			t.Errorf("%s: image %q build %v: both nodes run the image built from the Dockerfile", name, s.Image, s.Build)
		}
		if got := strings.Join(s.Healthcheck.Test, " "); got != "CMD /usr/local/bin/phigate healthcheck https://127.0.0.1:8443/readyz" {
			t.Errorf("%s: healthcheck %q", name, got)
		}
		for _, sec := range []string{"master_key", "escrow_public_key", "store_pgpass", "redis_password", "smarthost_password", "ca_cert", "portal_tls_cert", "portal_tls_key"} {
			if !slices.Contains(s.Secrets, sec) {
				t.Errorf("%s: secret %s missing", name, sec)
			}
		}
		if !slices.Contains(s.Volumes, "./deploy/phigate.toml:/etc/phigate/phigate.toml:ro") {
			t.Errorf("%s: volumes %v: the config file is mounted read-only", name, s.Volumes)
		}
		if len(s.Ports) != 0 {
			t.Errorf("%s publishes %v: only the load balancer is published", name, s.Ports)
		}
	}
	if d := c.Services["phigate2"].DependsOn["phigate1"].Condition; d != "service_healthy" {
		t.Errorf("phigate2 depends on phigate1 %q: it must wait until the first node has made the shared keys", d)
	}
	for _, dep := range []string{"postgres", "redis"} {
		if d := c.Services["phigate1"].DependsOn[dep].Condition; d != "service_healthy" {
			t.Errorf("phigate1 depends on %s: %q", dep, d)
		}
	}
	lb := c.Services["lb"]
	for _, p := range []string{"443:8443", "587:2587", "465:2465"} {
		if !slices.Contains(lb.Ports, p) {
			t.Errorf("lb ports %v: %s missing", lb.Ports, p)
		}
	}
	// The services behind phigate are on the internal network only.
	if !c.Networks["back"].Internal {
		t.Error("network back is not internal")
	}
	for _, name := range []string{"postgres", "redis"} {
		s := c.Services[name]
		if len(s.Ports) != 0 || !slices.Equal(s.Networks, []string{"back"}) {
			t.Errorf("%s: ports %v networks %v: unpublished, on back only", name, s.Ports, s.Networks)
		}
	}
	if p := c.Services["mail"].Ports; !slices.Equal(p, []string{"127.0.0.1:8025:8025"}) {
		t.Errorf("mail ports %v: only its web page, on loopback", p)
	}
	if e := c.Services["mail"].Environment; e["MP_SMTP_REQUIRE_STARTTLS"] != "true" || e["MP_SMTP_TLS_CERT"] == "" {
		t.Errorf("mail environment %v: STARTTLS required", e)
	}
	if pw := c.Services["postgres"].Environment["POSTGRES_PASSWORD_FILE"]; pw != "/run/secrets/store_password" {
		t.Errorf("postgres password from %q", pw)
	}
	if cmd := flat(c.Services["redis"].Command); !strings.Contains(cmd, "requirepass") || !strings.Contains(cmd, "/run/secrets/redis_password") ||
		!strings.Contains(cmd, "--port 0 --tls-port 6379") {
		t.Errorf("redis command %q: password from the secret, TLS only", cmd)
	}
	if cmd := flat(c.Services["postgres"].Command); !strings.Contains(cmd, "ssl=on") || !strings.Contains(cmd, "synchronous_commit=on") {
		t.Errorf("postgres command %q: TLS and synchronous commits", cmd)
	}
	// Every secret used is declared, from a file under deploy/secrets.
	for name, s := range c.Services {
		for _, sec := range s.Secrets {
			f := c.Secrets[sec].File
			if !strings.HasPrefix(f, "./deploy/secrets/") {
				t.Errorf("%s: secret %s from %q, want a file under ./deploy/secrets/", name, sec, f)
			}
		}
	}
}

func keys_[V any](m map[string]V) []string {
	var k []string
	for n := range m {
		k = append(k, n)
	}
	slices.Sort(k)
	return k
}

func flat(v any) string {
	switch c := v.(type) {
	case string:
		return strings.Join(strings.Fields(c), " ")
	case []any:
		var parts []string
		for _, p := range c {
			parts = append(parts, flat(p))
		}
		return strings.Join(parts, " ")
	}
	return ""
}

// makeSecrets runs deploy/make-secrets.sh into a temporary folder and
// returns it; every secret the compose file names must be there.
func makeSecrets(t *testing.T, c compose) string {
	t.Helper()
	testtool.Need(t, "openssl")
	testtool.Need(t, "gpg")
	dir := filepath.Join(t.TempDir(), "secrets")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "sh", "make-secrets.sh", dir).CombinedOutput()
	if err != nil {
		t.Fatalf("make-secrets.sh: %v\n%s", err, out)
	}
	for name, s := range c.Secrets {
		if _, err := os.Stat(filepath.Join(dir, filepath.Base(s.File))); err != nil {
			t.Errorf("secret %s: make-secrets.sh did not make %s", name, s.File)
		}
	}
	return dir
}

// The configuration the nodes run with is one phigate accepts: the real
// loader and production checks, its secrets made by make-secrets.sh and
// read by the real key and TLS loaders, the store URL's pgpass file giving
// the PostgreSQL password.
func TestComposeConfigIsAccepted(t *testing.T) {
	c := readCompose(t)
	secrets := makeSecrets(t, c)
	cfg, err := config.Load("phigate.toml", nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Fill()
	if err := cfg.Validate(); err != nil {
		t.Fatalf("deploy/phigate.toml: %v", err)
	}
	// /run/secrets/NAME in the container is deploy/secrets/FILE here.
	local := func(p string) string {
		name, ok := strings.CutPrefix(p, "/run/secrets/")
		if !ok {
			return p
		}
		s, ok := c.Secrets[name]
		if !ok {
			t.Errorf("%s: no compose secret %s", p, name)
			return p
		}
		return filepath.Join(secrets, filepath.Base(s.File))
	}
	exists := func(p string) bool { _, err := os.Stat(local(p)); return err == nil }
	if err := cfg.ValidateProduction(exists); err != nil {
		t.Fatalf("deploy/phigate.toml in production: %v", err)
	}
	if !store.IsPostgresURL(cfg.Store.URL) || !strings.HasPrefix(cfg.Redis.URL, "rediss://") || cfg.Smarthost.Addr != "mail:1025" {
		t.Errorf("store %q redis %q smarthost %q: PostgreSQL, Redis over TLS, the mail catcher", cfg.Store.URL, cfg.Redis.URL, cfg.Smarthost.Addr)
	}
	if cfg.Server.DrainDelay.Duration <= 0 {
		t.Error("server.drain_delay is 0: the balancer would see a stopping node only when it refuses connections")
	}
	// Every file the config names is a secret the nodes get.
	for _, p := range []string{cfg.TLS.CertFile, cfg.TLS.KeyFile, cfg.Keys.MasterKeyFile, cfg.Keys.EscrowPublicKeyFile,
		cfg.Redis.PasswordFile, cfg.Redis.CAFile, cfg.Smarthost.PasswordFile, cfg.Smarthost.CAFile} {
		name, ok := strings.CutPrefix(p, "/run/secrets/")
		if !ok || !slices.Contains(c.Services["phigate1"].Secrets, name) {
			t.Errorf("%s is not a secret of the phigate nodes", p)
		}
	}

	// The keys and certificate load with the real loaders.
	kc := cfg
	kc.Server.DataDir = t.TempDir()
	kc.Keys.MasterKeyFile, kc.Keys.EscrowPublicKeyFile = local(cfg.Keys.MasterKeyFile), local(cfg.Keys.EscrowPublicKeyFile)
	kc.Keys.GatewayKeyFile = filepath.Join(kc.Server.DataDir, "gateway-key.wrapped")
	log := slog.New(slog.DiscardHandler)
	if _, err := keys.Load(kc, log); err != nil {
		t.Errorf("keys from make-secrets.sh: %v", err)
	}
	if _, err := keys.LoadTLS(local(cfg.TLS.CertFile), local(cfg.TLS.KeyFile), cfg.Server.Hostname, false, log); err != nil {
		t.Errorf("portal certificate from make-secrets.sh: %v", err)
	}
	// The pgpass line matches the URL's host, port, database and user.
	u := strings.Replace(cfg.Store.URL, "/run/secrets/store_pgpass", local("/run/secrets/store_pgpass"), 1)
	u = strings.Replace(u, "/run/secrets/ca_cert", local("/run/secrets/ca_cert"), 1)
	pc, err := pgx.ParseConfig(u)
	if err != nil {
		t.Fatalf("store.url: %v", err)
	}
	pw, _ := os.ReadFile(filepath.Join(secrets, "store_password"))
	if pc.Password == "" || pc.Password != strings.TrimSpace(string(pw)) {
		t.Error("the pgpass secret does not give PostgreSQL's password for store.url")
	}
	if pc.TLSConfig == nil || pc.TLSConfig.ServerName != "postgres" {
		t.Errorf("store.url: TLS with the server name checked (verify-full), got %+v", pc.TLSConfig)
	}
}

// docker compose config (the plugin, else docker-compose v1) accepts the
// file. Neither needs a Docker engine for this.
func TestComposeConfigCommand(t *testing.T) {
	args := []string{"compose", "-f", filepath.Join(root, "docker-compose.yml"), "config", "-q"}
	bin := "docker"
	if exec.Command("docker", "compose", "version").Run() != nil {
		bin, args = testtool.Need(t, "docker-compose"), args[1:]
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", bin, strings.Join(args, " "), err, out)
	}
}

// haproxy -c accepts the load balancer's configuration (with the CA path
// pointed at a real file; server names resolve at run time).
func TestHAProxyConfig(t *testing.T) {
	bin := testtool.Need(t, "haproxy")
	c := readCompose(t)
	secrets := makeSecrets(t, c)
	b, err := os.ReadFile("haproxy.cfg")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for _, want := range []string{"mode tcp", "option httpchk GET /readyz", "http-check expect status 200", "option redispatch", "verify required"} {
		if !strings.Contains(s, want) {
			t.Errorf("haproxy.cfg lacks %q", want)
		}
	}
	for _, fe := range []string{"bind :8443", "bind :2587", "bind :2465"} {
		if !strings.Contains(s, fe) {
			t.Errorf("haproxy.cfg lacks %q (the lb's published ports)", fe)
		}
	}
	for _, node := range phigateNodes {
		if n := strings.Count(s, "server "+node+" "+node+":"); n != 3 {
			t.Errorf("%s is in %d backends, want 3", node, n)
		}
	}
	f := filepath.Join(t.TempDir(), "haproxy.cfg")
	s = strings.ReplaceAll(s, "/run/secrets/ca_cert", filepath.Join(secrets, "ca.pem"))
	if err := os.WriteFile(f, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bin, "-c", "-f", f).CombinedOutput(); err != nil {
		t.Fatalf("haproxy -c: %v\n%s", err, out)
	}
}

// The Dockerfile builds a static binary (CGO_ENABLED=0) in a golang stage
// and runs it as a non-root user on distroless static (or scratch).
func TestDockerfile(t *testing.T) {
	f, err := os.Open(filepath.Join(root, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var stages [][]string // instructions per stage, continuation lines joined
	var cur strings.Builder
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if cont, ok := strings.CutSuffix(line, "\\"); ok {
			cur.WriteString(cont + " ")
			continue
		}
		cur.WriteString(line)
		ins := cur.String()
		cur.Reset()
		if strings.HasPrefix(strings.ToUpper(ins), "FROM ") {
			stages = append(stages, nil)
		}
		if len(stages) == 0 {
			t.Fatalf("instruction before FROM: %s", ins)
		}
		stages[len(stages)-1] = append(stages[len(stages)-1], ins)
	}
	if len(stages) < 2 {
		t.Fatalf("%d stages, want a multi-stage build", len(stages))
	}
	build, final := strings.Join(stages[0], "\n"), stages[len(stages)-1]
	if !regexp.MustCompile(`(?m)^FROM golang:\S+ AS build`).MatchString(build) ||
		!regexp.MustCompile(`CGO_ENABLED=0 .*go build .*\./cmd/phigate`).MatchString(build) {
		t.Errorf("build stage:\n%s", build)
	}
	from := final[0]
	if !strings.HasPrefix(from, "FROM gcr.io/distroless/static") && from != "FROM scratch" {
		t.Errorf("final stage %q: distroless static or scratch", from)
	}
	var user string
	for _, ins := range final {
		if u, ok := strings.CutPrefix(ins, "USER "); ok {
			user = u
		}
	}
	if uid, _, _ := strings.Cut(user, ":"); uid == "" || uid == "0" || uid == "root" {
		t.Errorf("final stage USER %q: must be a non-root user", user)
	}
	all := strings.Join(final, "\n")
	for _, want := range []string{`ENTRYPOINT ["/usr/local/bin/phigate"]`, `"healthcheck", "https://127.0.0.1:8443/healthz"`, "EXPOSE 8443 2587 2465"} {
		if !strings.Contains(all, want) {
			t.Errorf("final stage lacks %s", want)
		}
	}
	di, err := os.ReadFile(filepath.Join(root, ".dockerignore"))
	if err != nil || !strings.Contains(string(di), "deploy/secrets") {
		t.Errorf(".dockerignore must keep deploy/secrets out of the build context (%v)", err)
	}
}

// The Dockerfile's build (CGO_ENABLED=0) needs no C: every package
// phigate imports is buildable without cgo, so the Go linker makes a static
// binary that runs on distroless static. (Building it here takes minutes
// on the shared machine; go list checks the same package set in seconds.)
func TestBuildsWithoutCgo(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "list", "-deps", "-e",
		"-f", "{{.ImportPath}}|{{if .Error}}{{.Error}}{{end}}|{{join .CgoFiles \",\"}}", "./cmd/phigate")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	n := 0
	for line := range strings.Lines(strings.TrimSpace(string(out))) {
		pkg, rest, _ := strings.Cut(strings.TrimSpace(line), "|")
		perr, cgo, _ := strings.Cut(rest, "|")
		n++
		if perr != "" || cgo != "" {
			t.Errorf("%s without cgo: error %q, cgo files %q", pkg, perr, cgo)
		}
		if pkg == "runtime/cgo" {
			t.Error("runtime/cgo is linked in: the binary would not be static")
		}
	}
	if n < 100 {
		t.Errorf("go list saw only %d packages", n)
	}
}
