package testcluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ringkv/ringkv/internal/hosts"
	"github.com/ringkv/ringkv/internal/rpcconn"
)

var builds struct {
	sync.Mutex
	bins map[bool]string // by race
}

// Binary builds ./cmd/ringkv once per test process (with -race when
// RaceServers) and returns its path. The binary lives in a temporary
// directory removed by Cleanup.
func Binary(t testing.TB) string {
	t.Helper()
	return build(t, RaceServers())
}

func build(t testing.TB, race bool) string {
	t.Helper()
	builds.Lock()
	defer builds.Unlock()
	if bin, ok := builds.bins[race]; ok {
		return bin
	}
	root, err := moduleRoot()
	if err != nil {
		t.Fatalf("build ringkv: %v", err)
	}
	dir, err := os.MkdirTemp("", "ringkv-bin-")
	if err != nil {
		t.Fatalf("build ringkv: temp dir: %v", err)
	}
	bin := filepath.Join(dir, "ringkv")
	args := []string{"build", "-o", bin}
	if race {
		args = append(args, "-race")
	}
	cmd := exec.Command("go", append(args, "./cmd/ringkv")...)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		_ = os.RemoveAll(dir) // best effort: a temp dir
		t.Fatalf("build ringkv: go build: %v\n%s", err, out)
	}
	if builds.bins == nil {
		builds.bins = map[bool]string{}
	}
	builds.bins[race] = bin
	return bin
}

// builtHere reports whether bin is one of the binaries Binary and
// BinaryNoRace built from this tree.
func builtHere(bin string) bool {
	builds.Lock()
	defer builds.Unlock()
	for _, b := range builds.bins {
		if b == bin {
			return true
		}
	}
	return false
}

// respFlag memoizes, per binary, whether its serve takes --resp.
var respFlag struct {
	sync.Mutex
	bins map[string]bool
}

// servesRESP reports whether bin's serve has the --resp flag: every
// binary built here, and a previous release's (TestRollingUpgrade) when
// it has one. Such a binary listens on 127.0.0.1:6379 unless told
// otherwise, so each node must be given its own port.
func servesRESP(bin string) bool {
	if builtHere(bin) {
		return true
	}
	respFlag.Lock()
	defer respFlag.Unlock()
	if ok, seen := respFlag.bins[bin]; seen {
		return ok
	}
	// serve -h prints the flags and exits non-zero (flag.ErrHelp).
	out, _ := exec.Command(bin, "serve", "-h").CombinedOutput() //nolint:errcheck // the usage text is what counts
	ok := strings.Contains(string(out), "-resp ")
	if respFlag.bins == nil {
		respFlag.bins = map[string]bool{}
	}
	respFlag.bins[bin] = ok
	return ok
}

// RaceServers reports whether Binary builds the servers with -race: only
// when the tests run under -race and RINGKV_RACE_SERVERS=1. By default
// the server processes are plain builds, so the integration suite fits
// CI's budget on two cores; the in-process tests of node, coordinator,
// consensus and client run the same code under the race detector.
func RaceServers() bool { return raceEnabled && os.Getenv("RINGKV_RACE_SERVERS") == "1" }

// Cleanup removes the built binaries; call it from TestMain after m.Run.
func Cleanup() {
	builds.Lock()
	defer builds.Unlock()
	for _, bin := range builds.bins {
		_ = os.RemoveAll(filepath.Dir(bin)) // best effort: a temp dir
	}
}

func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", errors.New("not inside the ringkv module")
	}
	return filepath.Dir(mod), nil
}

// Node is one ringkv serve process.
type Node struct {
	ID         string
	HTTPAddr   string
	RPCAddr    string
	GossipAddr string
	// RESPAddr is the Redis protocol's address (--resp); given only to
	// the binaries built from this tree (an older release has no --resp).
	RESPAddr string
	DataDir  string
	LogPath  string

	// Args are extra flags for `ringkv serve`, set before Start.
	Args []string

	t    testing.TB
	bin  string
	join []string
	// host is the network-namespace host the node runs on (Options.Hosts);
	// nil: loopback.
	host *hosts.Host
	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has been waited for
	// http is the HTTPS client of a secure cluster (as root), or the
	// client host's HTTP client (Options.Hosts); nil: net/http's default.
	http *http.Client
	// secure: the node serves HTTPS.
	secure bool
}

// Cluster is a set of nodes started by Start.
type Cluster struct {
	t     testing.TB
	Nodes []*Node
	// Hosts is Options.Hosts (nil: loopback).
	Hosts *hosts.Net
	// Certs is the secure cluster's CA directory (Options.Secure): ca.crt,
	// ca.key, gossip.key, client.root.crt, and one directory per node;
	// empty for an insecure cluster.
	Certs string
}

// Start launches n nodes (n1 founds the cluster, the others join it) and
// waits until every node sees every node joined and alive. Every process
// is killed when the test ends.
func Start(t testing.TB, n int) *Cluster {
	t.Helper()
	return StartWith(t, n)
}

// StartWith is Start with extra `ringkv serve` flags for every node.
func StartWith(t testing.TB, n int, args ...string) *Cluster {
	t.Helper()
	return StartOptions(t, Options{Nodes: n, Args: args})
}

// freeAddr returns a loopback address whose port was free, for TCP and
// UDP (gossip binds both), a moment ago. It picks below the kernel's
// ephemeral range when it can: a port the kernel handed out for a
// listen on :0 can be handed again, between our close and the child's
// bind, to any outgoing connection on the machine (seen: a node failing
// with "address already in use"); ports below that range are only ever
// taken by an explicit bind.
func freeAddr(t testing.TB) string {
	t.Helper()
	if lo := ephemeralLow(); lo > minPickPort {
		for range 200 {
			port := minPickPort + rand.IntN(lo-minPickPort) //nolint:gosec // port choice, not security
			if addr := fmt.Sprintf("127.0.0.1:%d", port); portFree(addr) && handOut(port) {
				return addr
			}
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	addr := l.Addr().String()
	_ = l.Close() // we only wanted the number
	return addr
}

// handedOut holds the ports freeAddr returned in this test process:
// tests of the package start clusters in parallel, and a port picked for
// one node must not be picked again for another before the first binds
// it (seen: "bind: address already in use" on a node's RESP port).
var handedOut struct {
	sync.Mutex
	ports map[int]bool
}

// handOut reserves port for good, reporting false if it was handed out
// already.
func handOut(port int) bool {
	handedOut.Lock()
	defer handedOut.Unlock()
	if handedOut.ports == nil {
		handedOut.ports = make(map[int]bool)
	}
	if handedOut.ports[port] {
		return false
	}
	handedOut.ports[port] = true
	return true
}

// minPickPort is the lowest port freeAddr picks.
const minPickPort = 10000

// ephemeralLow is the first port of the kernel's ephemeral range (0 if
// unknown).
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0
	}
	var lo, hi int
	if _, err := fmt.Sscan(string(b), &lo, &hi); err != nil {
		return 0
	}
	return lo
}

// portFree reports whether addr can be bound for TCP and for UDP.
func portFree(addr string) bool {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return false
	}
	defer l.Close() //nolint:errcheck // only probing
	u, err := net.ListenPacket("udp", addr)
	if err != nil {
		return false
	}
	_ = u.Close() // only probing
	return true
}

// Start (re)starts the node's process with its data directory.
func (nd *Node) Start() {
	nd.t.Helper()
	nd.mu.Lock()
	defer nd.mu.Unlock()
	if nd.cmd != nil {
		nd.t.Fatalf("%s already running", nd.ID)
	}
	logf, err := os.OpenFile(nd.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		nd.t.Fatalf("open log: %v", err)
	}
	args := []string{"serve", "--id", nd.ID, "--data", nd.DataDir,
		"--http", nd.HTTPAddr, "--rpc", nd.RPCAddr, "--gossip", nd.GossipAddr,
		"--fast-gossip", "--log-level", "debug"}
	if nd.host != nil {
		// Every interface of its host, and the host's address advertised:
		// as in a container.
		args = []string{"serve", "--id", nd.ID, "--data", nd.DataDir,
			"--http", "0.0.0.0:8081", "--rpc", "0.0.0.0:9001", "--gossip", "0.0.0.0:7001",
			"--advertise", nd.host.IP, "--fast-gossip", "--log-level", "debug"}
	}
	if len(nd.join) > 0 {
		args = append(args, "--join", strings.Join(nd.join, ","))
	}
	if servesRESP(nd.bin) {
		if nd.host != nil {
			args = append(args, "--resp", "0.0.0.0:6379")
		} else {
			args = append(args, "--resp", nd.RESPAddr)
		}
	}
	args = append(args, nd.Args...)
	cmd := exec.Command(nd.bin, args...)
	if nd.host != nil {
		cmd = nd.host.Command(nd.bin, args...)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		_ = logf.Close()
		nd.t.Fatalf("start %s: %v", nd.ID, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait() // exit status is expected to be non-zero after Kill
		_ = logf.Close()
		close(done)
	}()
	nd.cmd, nd.done = cmd, done
}

// SetBinary makes the node's next Start run bin (a rolling upgrade
// replaces each node's binary in turn).
func (nd *Node) SetBinary(bin string) {
	nd.mu.Lock()
	defer nd.mu.Unlock()
	nd.bin = bin
}

// Kill sends SIGKILL and waits for the process to exit. No-op if stopped.
func (nd *Node) Kill() { nd.signalAndWait(syscall.SIGKILL) }

// Stop sends SIGTERM (a clean shutdown) and waits for the process to exit.
func (nd *Node) Stop() { nd.signalAndWait(syscall.SIGTERM) }

// Restart stops the node with SIGTERM and starts it again.
func (nd *Node) Restart() {
	nd.Stop()
	nd.Start()
}

func (nd *Node) signalAndWait(sig syscall.Signal) {
	nd.mu.Lock()
	cmd, done := nd.cmd, nd.done
	nd.cmd = nil
	nd.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(sig) // it may have exited already
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill() // did not stop in time
		<-done
	}
}

// Running reports whether the process is running.
func (nd *Node) Running() bool {
	nd.mu.Lock()
	defer nd.mu.Unlock()
	return nd.cmd != nil
}

// Stats is the subset of GET /api/stats the tests use.
type Stats struct {
	NodeID      string   `json:"node_id"`
	RingVersion uint64   `json:"ring_version"`
	Partitions  []uint32 `json:"partitions"`
	Members     []struct {
		ID       string `json:"id"`
		RPCAddr  string `json:"rpc_addr"`
		HTTPAddr string `json:"http_addr"`
		Liveness string `json:"liveness"`
		Status   string `json:"status"`
	} `json:"members"`
	Groups []GroupStats `json:"groups"`
}

// GroupStats is one raft group in /api/stats.
type GroupStats struct {
	Partition         uint32   `json:"partition"`
	State             string   `json:"state"`
	Leader            string   `json:"leader"`
	Term              uint64   `json:"term"`
	CommitIndex       uint64   `json:"commit_index"`
	AppliedIndex      uint64   `json:"applied_index"`
	LastSnapshotIndex uint64   `json:"last_snapshot_index"`
	LogEntries        uint64   `json:"log_entries"`
	Voters            []string `json:"voters"`
}

// Stats fetches the node's /api/stats.
func (nd *Node) Stats(ctx context.Context) (Stats, error) {
	var s Stats
	code, body, err := nd.Do(ctx, http.MethodGet, "/api/stats", nil, nil)
	if err != nil {
		return s, err
	}
	if code != http.StatusOK {
		return s, fmt.Errorf("stats: HTTP %d: %s", code, body)
	}
	if err := json.Unmarshal(body, &s); err != nil {
		return s, fmt.Errorf("stats: %w", err)
	}
	return s, nil
}

// WaitConverged polls until every running node sees every running node as
// joined and alive, or fails the test after timeout.
func (c *Cluster) WaitConverged(timeout time.Duration) {
	c.t.Helper()
	c.WaitFor(timeout, "cluster membership to converge", func(ctx context.Context) error {
		for _, nd := range c.Nodes {
			if !nd.Running() {
				continue
			}
			s, err := nd.Stats(ctx)
			if err != nil {
				return err
			}
			for _, other := range c.Nodes {
				if !other.Running() {
					continue
				}
				ok := false
				for _, m := range s.Members {
					if m.ID == other.ID && m.Status == "joined" && m.Liveness == "alive" {
						ok = true
					}
				}
				if !ok {
					return fmt.Errorf("%s does not see %s joined and alive", nd.ID, other.ID)
				}
			}
		}
		return nil
	})
}

// WaitFor polls cond every 50ms until it returns nil, failing the test
// with cond's last error after timeout.
func (c *Cluster) WaitFor(timeout time.Duration, what string, cond func(ctx context.Context) error) {
	c.t.Helper()
	c.WaitForEvery(timeout, 50*time.Millisecond, what, cond)
}

// WaitForEvery is WaitFor polling every interval: for a condition that
// frequent polling would itself disturb (a node's idle state, which a
// scrape of /metrics every 50 ms keeps above a tenth of a core).
func (c *Cluster) WaitForEvery(timeout, interval time.Duration, what string, cond func(ctx context.Context) error) {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	var last error
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		last = cond(ctx)
		cancel()
		if last == nil {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("waiting for %s: %v", what, last)
		}
		timer := time.NewTimer(interval)
		<-timer.C
	}
}

// Dialer returns what a test's own connections to the nodes must dial
// with: the client host's DialContext on Options.Hosts, else nil (a
// net.Dialer will do). Give it to the client library (client.WithDialer)
// and to an http.Transport's DialContext.
func (c *Cluster) Dialer() rpcconn.DialFunc {
	if c.Hosts == nil {
		return nil
	}
	return c.Hosts.DialContext
}

// Host returns the host the node runs on (Options.Hosts), or nil.
func (nd *Node) Host() *hosts.Host { return nd.host }

// Do sends an HTTP request to the node and returns status and body.
func (nd *Node) Do(ctx context.Context, method, path string, query url.Values, body any) (int, []byte, error) {
	hc := http.DefaultClient
	if nd.http != nil {
		hc = nd.http
	}
	return nd.DoWith(ctx, hc, method, path, query, body)
}

// DoWith is Do through hc, which must speak the node's scheme (HTTPS with
// a client certificate on a secure cluster).
func (nd *Node) DoWith(ctx context.Context, hc *http.Client, method, path string, query url.Values, body any) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, nil, fmt.Errorf("encode: %w", err)
		}
		rd = bytes.NewReader(b)
	}
	u := nd.URL(path)
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return 0, nil, fmt.Errorf("request: %w", err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("%s %s on %s: %w", method, path, nd.ID, err)
	}
	defer func() { _ = resp.Body.Close() }() // read fully below
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, nil, fmt.Errorf("read body: %w", err)
	}
	return resp.StatusCode, b, nil
}

// Set writes key=value through the node at level; it returns the HTTP status.
func (nd *Node) Set(ctx context.Context, key, value, level string) (int, error) {
	code, _, err := nd.Do(ctx, http.MethodPost, "/api/set", url.Values{"consistency": {level}}, map[string]string{"key": key, "value": value})
	return code, err
}

// Get reads key through the node at level: value, HTTP status, error.
func (nd *Node) Get(ctx context.Context, key, level string) (string, int, error) {
	code, body, err := nd.Do(ctx, http.MethodGet, "/api/get", url.Values{"key": {key}, "consistency": {level}}, nil)
	if err != nil {
		return "", code, err
	}
	var out struct {
		Value string `json:"value"`
	}
	if code == http.StatusOK {
		if err := json.Unmarshal(body, &out); err != nil {
			return "", code, fmt.Errorf("decode get: %w", err)
		}
	}
	return out.Value, code, nil
}

// CAS runs POST /api/cas: expected nil means put-if-absent. It returns
// whether it swapped, the current value when it did not, and the status.
func (nd *Node) CAS(ctx context.Context, key string, expected *string, value string) (bool, string, int, error) {
	return nd.CASWithTTL(ctx, key, expected, value, "")
}

// CASWithTTL is CAS writing a value that expires after ttl (seconds or a
// duration string; "" never).
func (nd *Node) CASWithTTL(ctx context.Context, key string, expected *string, value, ttl string) (bool, string, int, error) {
	body := map[string]any{"key": key, "value": value}
	if ttl != "" {
		body["ttl"] = ttl
	}
	if expected != nil {
		body["expected"] = *expected
	}
	code, b, err := nd.Do(ctx, http.MethodPost, "/api/cas", nil, body)
	if err != nil {
		return false, "", code, err
	}
	var out struct {
		Success bool   `json:"success"`
		Current string `json:"current"`
	}
	if code == http.StatusOK {
		if err := json.Unmarshal(b, &out); err != nil {
			return false, "", code, fmt.Errorf("decode cas: %w", err)
		}
	}
	return out.Success, out.Current, code, nil
}

// Metric returns the sum of every sample of the named metric on the node's
// /metrics (0 if absent).
func (nd *Node) Metric(ctx context.Context, name string) (float64, error) {
	code, body, err := nd.Do(ctx, http.MethodGet, "/metrics", nil, nil)
	if err != nil {
		return 0, err
	}
	if code != http.StatusOK {
		return 0, fmt.Errorf("metrics: HTTP %d", code)
	}
	sum := 0.0
	for _, line := range strings.Split(string(body), "\n") {
		if !strings.HasPrefix(line, name+" ") && !strings.HasPrefix(line, name+"{") {
			continue
		}
		fields := strings.Fields(line)
		var v float64
		if _, err := fmt.Sscan(fields[len(fields)-1], &v); err == nil {
			sum += v
		}
	}
	return sum, nil
}

// WaitRaftReady polls until every running node answers /ready and every
// group on every running node has voters equal to want (when want > 0).
func (c *Cluster) WaitRaftReady(timeout time.Duration, want int) {
	c.t.Helper()
	c.WaitFor(timeout, "raft groups to be ready", func(ctx context.Context) error {
		for _, nd := range c.Nodes {
			if !nd.Running() {
				continue
			}
			code, body, err := nd.Do(ctx, http.MethodGet, "/ready", nil, nil)
			if err != nil {
				return err
			}
			if code != http.StatusOK {
				return fmt.Errorf("%s not ready: %s", nd.ID, body)
			}
			if want == 0 {
				continue
			}
			s, err := nd.Stats(ctx)
			if err != nil {
				return err
			}
			for _, g := range s.Groups {
				if len(g.Voters) != want {
					return fmt.Errorf("%s: group %d has voters %v", nd.ID, g.Partition, g.Voters)
				}
			}
		}
		return nil
	})
}

// ---- Added for membership_test.go: growing a running cluster. ----

// AddNode creates the next node (n<len(Nodes)+1>) with the flags of the
// first node and every existing node's gossip address as seeds, starts it
// and returns it. It does not wait for the node to join: use WaitConverged
// or WaitFor. The process is killed when the test ends, like Start's.
func (c *Cluster) AddNode() *Node {
	c.t.Helper()
	if len(c.Nodes) == 0 {
		c.t.Fatal("AddNode: the cluster has no nodes")
	}
	if c.Hosts != nil {
		c.t.Fatal("AddNode: on hosts, start with Options.Spares instead")
	}
	first := c.Nodes[0]
	root := filepath.Dir(first.DataDir)
	nd := &Node{
		ID:         fmt.Sprintf("n%d", len(c.Nodes)+1),
		HTTPAddr:   freeAddr(c.t),
		RPCAddr:    freeAddr(c.t),
		GossipAddr: freeAddr(c.t),
		RESPAddr:   freeAddr(c.t),
		Args:       first.Args,
		t:          c.t,
		bin:        first.bin,
	}
	nd.DataDir = filepath.Join(root, nd.ID)
	nd.LogPath = filepath.Join(root, nd.ID+".log")
	for _, prev := range c.Nodes {
		nd.join = append(nd.join, prev.GossipAddr)
	}
	c.Nodes = append(c.Nodes, nd) // Start's cleanup kills every node in c.Nodes
	nd.Start()
	return nd
}

// ---- Added for tombstone_test.go: freezing a node (a partition from
// the cluster's point of view). ----

// Pause freezes the node's process (SIGSTOP): it keeps its state and its
// sockets but answers nothing, as if partitioned away. No-op if stopped.
// It returns once every thread of the process has stopped: the kernel
// delivers SIGSTOP to one thread, which then stops the others, and until
// it has run the rest of the process still serves requests.
func (nd *Node) Pause() {
	nd.signal(syscall.SIGSTOP)
	nd.mu.Lock()
	cmd, done := nd.cmd, nd.done
	nd.mu.Unlock()
	if cmd == nil {
		return
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		stopped, err := allThreadsStopped(cmd.Process.Pid)
		if stopped {
			return
		}
		// A process that exited has nothing left to stop: the wait below
		// returns on done.
		if time.Now().After(deadline) {
			nd.t.Errorf("%s did not stop within 10s after SIGSTOP (last check: %v)", nd.ID, err)
			return
		}
		timer := time.NewTimer(time.Millisecond)
		select {
		case <-timer.C:
		case <-done:
			timer.Stop()
			return
		}
	}
}

// allThreadsStopped reports whether every thread of pid is in the stopped
// state ('T', or 't' when traced), reading /proc/PID/task/*/stat.
func allThreadsStopped(pid int) (bool, error) {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return false, fmt.Errorf("list threads: %w", err)
	}
	for _, task := range tasks {
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/stat", pid, task.Name()))
		if err != nil {
			return false, fmt.Errorf("thread %s: %w", task.Name(), err)
		}
		state, ok := threadState(stat)
		if !ok {
			return false, fmt.Errorf("thread %s: unparsable stat %q", task.Name(), stat)
		}
		if state != 'T' && state != 't' {
			return false, fmt.Errorf("thread %s in state %c", task.Name(), state)
		}
	}
	return len(tasks) > 0, nil
}

// threadState returns the state field of a /proc stat line: the first
// character after the command name's closing parenthesis and a space.
func threadState(stat []byte) (byte, bool) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 || i+2 >= len(stat) {
		return 0, false
	}
	return stat[i+2], true
}

// Resume continues a paused node (SIGCONT).
func (nd *Node) Resume() { nd.signal(syscall.SIGCONT) }

func (nd *Node) signal(sig syscall.Signal) {
	nd.mu.Lock()
	defer nd.mu.Unlock()
	if nd.cmd != nil {
		_ = nd.cmd.Process.Signal(sig) // it may have exited
	}
}
