package check

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// repo is the repository root, relative to this package.
const repo = "../.."

// repoPath returns the path of a file given relative to the repository root.
func repoPath(rel string) string { return filepath.Join(repo, filepath.FromSlash(rel)) }

func readRepoFile(t *testing.T, rel string) []byte {
	t.Helper()
	b, err := os.ReadFile(repoPath(rel))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// splitYAMLDocuments splits a YAML stream at its "---" lines and drops
// the documents that hold nothing but comments and blank lines.
func splitYAMLDocuments(b []byte) [][]byte {
	var docs [][]byte
	var cur bytes.Buffer
	flush := func() {
		for _, line := range strings.Split(cur.String(), "\n") {
			if s := strings.TrimSpace(line); s != "" && !strings.HasPrefix(s, "#") {
				docs = append(docs, bytes.Clone(cur.Bytes()))
				break
			}
		}
		cur.Reset()
	}
	for _, line := range strings.SplitAfter(string(b), "\n") {
		if strings.TrimRight(line, " \r\n") == "---" {
			flush()
			continue
		}
		cur.WriteString(line)
	}
	flush()
	return docs
}

// expandK8s expands s as Kubernetes expands a container's command, args
// and env values: $(NAME) becomes the value of NAME when vars defines it
// and stays as it is otherwise, and $$ becomes $.
func expandK8s(s string, vars map[string]string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 == len(s) {
			b.WriteByte(s[i])
			continue
		}
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			i++
		case '(':
			end := strings.IndexByte(s[i+2:], ')')
			if end < 0 {
				b.WriteString(s[i:])
				return b.String()
			}
			name := s[i+2 : i+2+end]
			if v, ok := vars[name]; ok {
				b.WriteString(v)
			} else {
				b.WriteString(s[i : i+3+end])
			}
			i += 2 + end
		default:
			b.WriteByte('$')
		}
	}
	return b.String()
}

// flagValues returns the values of the --name=value and --name value
// arguments in args (single or double dash), by name; a flag without a
// value (--insecure) maps to "true". Arguments that are not flags are
// returned in order as positional.
func flagValues(args []string) (flags map[string]string, positional []string) {
	flags = map[string]string{}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "-") || a == "-" {
			positional = append(positional, a)
			continue
		}
		name := strings.TrimLeft(a, "-")
		if n, v, ok := strings.Cut(name, "="); ok {
			flags[n] = v
			continue
		}
		// A bare flag takes the next argument unless that is a flag or
		// the flag is boolean.
		if boolFlags[name] || i+1 == len(args) || strings.HasPrefix(args[i+1], "-") {
			flags[name] = "true"
			continue
		}
		flags[name] = args[i+1]
		i++
	}
	return flags, positional
}

// boolFlags are the boolean flags of `ringkv serve` and `ringkv certs`.
var boolFlags = map[string]bool{
	"insecure": true, "metrics-open": true, "fast-gossip": true, "overwrite": true, "client": true,
	"chaos-hooks": true, "unsafe-stale-reads": true, "hints": true,
}

// hostPort splits "host:port" and parses the port.
func hostPort(t *testing.T, what, addr string) (string, int) {
	t.Helper()
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("%s %q: %v", what, addr, err)
	}
	port, err := strconv.Atoi(p)
	if err != nil {
		t.Fatalf("%s %q: port: %v", what, addr, err)
	}
	return host, port
}

// The ringkv binary, built once per test binary the way
// internal/testcluster builds it (so CI builds it once for both).
var binary struct {
	sync.Mutex
	path string
	err  error
}

// ringkvBinary builds cmd/ringkv from the repository into a temporary
// directory (once) and returns its path.
func ringkvBinary(t *testing.T) string {
	t.Helper()
	binary.Lock()
	defer binary.Unlock()
	if binary.path == "" && binary.err == nil {
		dir, err := os.MkdirTemp("", "ringkv-deploy-check-")
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, "ringkv")
		cmd := exec.Command("go", "build", "-o", path, "./cmd/ringkv")
		cmd.Dir = repo
		if out, err := cmd.CombinedOutput(); err != nil {
			binary.err = fmt.Errorf("go build ./cmd/ringkv: %w\n%s", err, out)
		} else {
			binary.path = path
		}
	}
	if binary.err != nil {
		t.Fatal(binary.err)
	}
	return binary.path
}

// removeBinary deletes the built binary; TestMain calls it.
func removeBinary() {
	binary.Lock()
	defer binary.Unlock()
	if binary.path != "" {
		_ = os.RemoveAll(filepath.Dir(binary.path)) // best effort: a temp dir
	}
}

func TestMain(m *testing.M) {
	code := m.Run()
	removeBinary()
	os.Exit(code)
}

// run runs the built binary (or, when name is not "ringkv", that
// program) with args and env, failing the test with its output on error.
func run(t *testing.T, env []string, name string, args ...string) string {
	t.Helper()
	if name == "ringkv" {
		name = ringkvBinary(t)
	}
	cmd := exec.Command(name, args...)
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %q: %v\n%s", filepath.Base(name), args, err, out)
	}
	return string(out)
}

// process is a long-running child (a simulated pod or container) whose
// output goes to a log file that the test prints if it fails.
type process struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
}

// start starts name with args and env in the background and registers a
// cleanup that stops it (SIGTERM, then SIGKILL after 20 s) and prints its
// log if the test failed.
func start(t *testing.T, label string, env []string, name string, args ...string) *process {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), label+".log")
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(name, args...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		_ = f.Close() // the start error is the one to report
		t.Fatalf("start %s: %v", label, err)
	}
	p := &process{name: label, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait() // the exit status shows in the log; stop() waits on done
		_ = f.Close()  // a log file
		close(p.done)
	}()
	t.Cleanup(func() {
		if !t.Failed() {
			p.stop(t)
			return
		}
		// A failed test: take the goroutines of the process before it
		// stops (SIGQUIT makes the Go runtime print them and exit), so
		// that a node stuck in a wait shows where.
		before, _ := os.ReadFile(logPath) // best effort: a diagnostic
		p.quit(t)
		b, _ := os.ReadFile(logPath) // best effort: a diagnostic
		t.Logf("--- log of %s (last 4 KiB):\n%s", label, tail(before, 4096))
		if g := goroutinesIn(b[len(before):], "ringkv/ring/gossip."); len(g) > 0 {
			t.Logf("--- goroutines of %s in ring/gossip at the failure:\n%s", label, tail(g, 16384))
		}
	})
	return p
}

// quit sends SIGQUIT (the Go runtime prints every goroutine's stack and
// exits) and waits for the exit.
func (p *process) quit(t *testing.T) { p.signal(t, syscall.SIGQUIT, "SIGQUIT", 10*time.Second) }

// goroutinesIn returns the goroutine stacks of a Go runtime dump whose
// frames mention pkg, separated by blank lines.
func goroutinesIn(dump []byte, pkg string) []byte {
	var out []byte
	for _, g := range bytes.Split(dump, []byte("\n\n")) {
		if bytes.HasPrefix(bytes.TrimSpace(g), []byte("goroutine ")) && bytes.Contains(g, []byte(pkg)) {
			out = append(append(out, bytes.TrimSpace(g)...), "\n\n"...)
		}
	}
	return out
}

// exited returns an error marked errGaveUp if any of procs has exited.
func exited(procs []*process) error {
	for _, p := range procs {
		select {
		case <-p.done:
			return fmt.Errorf("%w: %s exited: %s", errGaveUp, p.name, p.cmd.ProcessState)
		default:
		}
	}
	return nil
}

// stop sends SIGTERM, as Kubernetes and Docker do, and waits for the exit.
func (p *process) stop(t *testing.T) { p.signal(t, syscall.SIGTERM, "SIGTERM", 20*time.Second) }

// signal sends sig (named name) and waits for the exit; SIGKILL if it
// has not exited within wait.
func (p *process) signal(t *testing.T, sig syscall.Signal, name string, wait time.Duration) {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(sig) // it may have exited meanwhile
	select {
	case <-p.done:
	case <-time.After(wait):
		t.Errorf("%s did not exit within %v of %s", p.name, wait, name)
		_ = p.cmd.Process.Kill() // give up on a clean exit
		<-p.done
	}
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// loopbackNet returns a random 127.a.b.0/24 prefix ("127.a.b."), so that
// the simulated hosts can listen on the manifests' fixed ports without
// colliding with anything on 127.0.0.1. It skips the test if the ports
// cannot be bound on the first address (a wildcard listener holds them).
func loopbackNet(t *testing.T, ports []int) string {
	t.Helper()
	prefix := fmt.Sprintf("127.%d.%d.", 100+rand.IntN(150), 1+rand.IntN(250))
	for _, p := range ports {
		l, err := net.Listen("tcp", net.JoinHostPort(prefix+"1", strconv.Itoa(p)))
		if err != nil {
			t.Skipf("cannot listen on port %d of a loopback address: %v", p, err)
		}
		_ = l.Close() // a probe
	}
	return prefix
}

// httpsClient trusts the CA certificate in caFile and presents no
// certificate: what a kubelet probe or an anonymous caller has.
func httpsClient(t *testing.T, caFile string) *http.Client {
	t.Helper()
	pem, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatalf("%s: no certificate", caFile)
	}
	return &http.Client{
		Timeout:   5 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}},
	}
}

// getJSON GETs url and decodes the body into out (if not nil); it returns
// the status code.
func getJSON(ctx context.Context, c *http.Client, url string, out any) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	defer func() { _ = resp.Body.Close() }() // read to the end below
	if out != nil {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			return resp.StatusCode, fmt.Errorf("decode %s: %w", url, err)
		}
	}
	return resp.StatusCode, nil
}

// errGaveUp marks an error that waitFor does not wait out.
var errGaveUp = errors.New("gave up")

// waitFor polls cond every 200 ms until it returns nil or the deadline
// passes, and then fails the test with cond's last error; an error marked
// errGaveUp fails it at once.
func waitFor(t *testing.T, d time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := cond()
		if err == nil {
			return
		}
		if errors.Is(err, errGaveUp) || time.Now().After(deadline) {
			t.Fatalf("%s: not within %s: %v", what, d, err)
		}
		tick := time.NewTimer(200 * time.Millisecond) // poll, not sleep: the condition decides
		<-tick.C
	}
}

// withoutEnv returns os.Environ() minus every RINGKV_ variable, plus extra.
func withoutEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "RINGKV_") {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}
