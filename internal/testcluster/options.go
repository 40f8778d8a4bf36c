package testcluster

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ringkv/ringkv/internal/hosts"
	"github.com/ringkv/ringkv/internal/pki"
)

// ---- Added for the chaos harness (internal/chaos): clusters whose
// addresses are known before any node starts, spare nodes, and a binary
// built without the race detector. ----

// BinaryNoRace returns a ringkv binary built without -race: server
// processes about ten times faster than a race build, for tests whose own
// process may still run under -race. It is Binary unless RaceServers.
func BinaryNoRace(t testing.TB) string {
	t.Helper()
	return build(t, false)
}

// CleanupNoRace is Cleanup (kept for TestMains that call both).
func CleanupNoRace() { Cleanup() }

// Options describe a cluster for StartOptions.
type Options struct {
	// Nodes is how many nodes start (n1 founds the cluster). Required.
	Nodes int
	// Spares is how many more nodes get ids, addresses and data
	// directories but are not started: Start one later to grow the
	// cluster (it joins through every earlier node's gossip address).
	Spares int
	// Args are extra `ringkv serve` flags for every node.
	Args []string
	// NoRace runs the server processes from BinaryNoRace.
	NoRace bool
	// Binary, when set, is the ringkv binary the nodes run (an older
	// release, for upgrade tests); Node.SetBinary changes it per node.
	Binary string
	// Prepare, when set, is called once every node (spares included) has
	// its addresses and before any starts; it may change each Node's Args.
	Prepare func(nodes []*Node)
	// ConvergeTimeout bounds the wait for membership. Default 60s.
	ConvergeTimeout time.Duration
	// Hosts, if set, runs node i on Hosts.Hosts[i-1] (so it needs at least
	// Nodes+Spares hosts): the process runs in that host's network
	// namespace, listens on 0.0.0.0 at the default ports (HTTP 8081, drpc
	// 9001, gossip 7001) with --advertise set to the host's address, and
	// Node's addresses are the host's; the cluster's HTTP calls dial from
	// the client host (Hosts.DialContext), and so must the test's own
	// clients (Cluster.Dialer). An insecure cluster gets --insecure (a
	// listener off loopback needs it).
	Hosts *hosts.Net
	// Secure makes a CA (Cluster.Certs), a certs directory per node
	// (--certs-dir, node certificate for 127.0.0.1), a gossip key
	// (--gossip-key-file) and the root user's client certificate; the
	// nodes serve TLS, and Do, Stats and the rest speak HTTPS as root.
	Secure bool
}

// StartOptions is StartWith with Options. Every process, spares included,
// is killed when the test ends, and every node's log is dumped into the
// test log if the test failed.
func StartOptions(t testing.TB, o Options) *Cluster {
	t.Helper()
	bin := Binary(t)
	if o.NoRace {
		bin = BinaryNoRace(t)
	}
	if o.Binary != "" {
		bin = o.Binary
	}
	if o.ConvergeTimeout <= 0 {
		o.ConvergeTimeout = 60 * time.Second
	}
	root := t.TempDir()
	c := &Cluster{t: t, Hosts: o.Hosts}
	total := o.Nodes + o.Spares
	if o.Hosts != nil && len(o.Hosts.Hosts) < total {
		t.Fatalf("testcluster: %d hosts for %d nodes", len(o.Hosts.Hosts), total)
	}
	hostOf := func(i int) *hosts.Host { // node i, 1-based
		if o.Hosts == nil {
			return nil
		}
		return o.Hosts.Hosts[i-1]
	}
	if o.Secure {
		c.Certs = filepath.Join(root, "certs")
		if err := makeCerts(c.Certs, total, func(i int) string {
			if h := hostOf(i); h != nil {
				return h.IP
			}
			return ""
		}); err != nil {
			t.Fatal(err)
		}
	}
	for i := 1; i <= total; i++ {
		nd := &Node{ID: fmt.Sprintf("n%d", i), t: t, bin: bin, host: hostOf(i)}
		if nd.host != nil {
			nd.HTTPAddr = net.JoinHostPort(nd.host.IP, "8081")
			nd.RPCAddr = net.JoinHostPort(nd.host.IP, "9001")
			nd.GossipAddr = net.JoinHostPort(nd.host.IP, "7001")
			nd.RESPAddr = net.JoinHostPort(nd.host.IP, "6379")
		} else {
			nd.HTTPAddr, nd.RPCAddr, nd.GossipAddr, nd.RESPAddr = freeAddr(t), freeAddr(t), freeAddr(t), freeAddr(t)
		}
		nd.Args = append([]string(nil), o.Args...)
		if o.Hosts != nil && !o.Secure {
			nd.Args = append(nd.Args, "--insecure")
		}
		if o.Hosts != nil {
			nd.http = &http.Client{Transport: &http.Transport{DialContext: o.Hosts.DialContext}, Timeout: time.Minute}
		}
		if o.Secure {
			nd.Args = append(nd.Args, "--certs-dir", filepath.Join(c.Certs, nd.ID),
				"--gossip-key-file", filepath.Join(c.Certs, pki.GossipKeyFile))
			hc, err := secureHTTP(c.Certs, "root", c.Dialer())
			if err != nil {
				t.Fatal(err)
			}
			nd.http, nd.secure = hc, true
		}
		nd.DataDir = filepath.Join(root, nd.ID)
		nd.LogPath = filepath.Join(root, nd.ID+".log")
		for _, prev := range c.Nodes {
			nd.join = append(nd.join, prev.GossipAddr)
		}
		c.Nodes = append(c.Nodes, nd)
	}
	t.Cleanup(func() {
		if t.Failed() && c.Hosts != nil {
			t.Logf("---- the hosts' network ----\n%s", c.Hosts.Diagnose())
		}
		if t.Failed() {
			// SIGQUIT: the Go runtime writes every goroutine's stack to the
			// node's log and exits, so a hung node shows where it hangs.
			for _, nd := range c.Nodes {
				nd.signal(syscall.SIGCONT) // a paused node could not take SIGQUIT
				nd.signalAndWait(syscall.SIGQUIT)
			}
		}
		for _, nd := range c.Nodes {
			nd.Kill()
		}
		if dir := os.Getenv("RINGKV_TESTCLUSTER_LOGS"); dir != "" {
			keepLogs(t, dir, c.Nodes)
		}
		if t.Failed() {
			for _, nd := range c.Nodes {
				b, err := os.ReadFile(nd.LogPath)
				if err != nil {
					continue // a spare never started
				}
				t.Logf("---- log of %s ----\n%s", nd.ID, b)
			}
		}
	})
	if o.Prepare != nil {
		o.Prepare(c.Nodes)
	}
	for _, nd := range c.Nodes[:o.Nodes] {
		nd.Start()
	}
	c.WaitConverged(o.ConvergeTimeout)
	return c
}

// keepLogs copies every node's log into dir/<test name>/ (RINGKV_TESTCLUSTER_LOGS),
// for reading a run that passed.
func keepLogs(t testing.TB, dir string, nodes []*Node) {
	out := filepath.Join(dir, strings.ReplaceAll(t.Name(), "/", "_"))
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Logf("keep logs: %v", err)
		return
	}
	for _, nd := range nodes {
		b, err := os.ReadFile(nd.LogPath)
		if err != nil {
			continue // a spare never started
		}
		if err := os.WriteFile(filepath.Join(out, nd.ID+".log"), b, 0o644); err != nil {
			t.Logf("keep logs: %v", err)
		}
	}
	t.Logf("node logs kept in %s", out)
}
