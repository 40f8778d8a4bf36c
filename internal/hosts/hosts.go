// Package hosts gives tests hosts that are not one loopback address: each
// host is a Linux network namespace of its own, with one interface (eth0)
// and a private address, cabled by a veth pair to a bridge that lives in a
// namespace of its own too (the switch). The test process itself stays
// outside: its connections to the hosts are made from one more namespace
// on the same bridge (the client host), through Net.DialContext, so every
// packet the test causes goes between addresses the test made, inside
// namespaces it made.
//
// Processes run on a host through Host.Command (`ip netns exec`). Faults
// are host-level: LinkDown cuts the host's cable at the switch (its own
// interface stays up, as with a failed switch port or cable), Freeze and
// Thaw stop and continue every process of the host (SIGSTOP, SIGCONT), and
// a restart is the test killing its process and starting it again.
//
// New skips the test, saying why, where the kernel or the user cannot make
// namespaces (not root, no `ip`, a sandbox that refuses CLONE_NEWNET); with
// RINGKV_HOSTS_REQUIRED=1 in the environment (CI, as root) it fails
// instead, so a broken setup cannot pass as a skip.
//
// Everything New makes is removed when the test ends: the hosts' processes
// are killed and the namespaces deleted (which deletes their interfaces
// and the bridge).
//
// # Goroutines
//
// DialContext runs each dial on a goroutine of its own, locked to an OS
// thread that it moves into the client host's namespace for the dial and
// back out after it (a thread that cannot move back stays locked and is
// discarded when the goroutine exits), so no other goroutine ever runs in
// that namespace. The connection it returns is an ordinary file
// descriptor, usable from any goroutine.
package hosts

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Net is a switch and the hosts cabled to it.
type Net struct {
	// Hosts are the hosts New made, h1 first.
	Hosts []*Host
	// Subnet is the hosts' /24, e.g. "10.231.7.0/24".
	Subnet string

	tag    string // random, in every name New makes
	sw     string // the switch's namespace
	client *Host
	// clientNS is the client host's namespace file, opened once for
	// DialContext's setns calls.
	clientNS *os.File
}

// Host is one namespace with one address.
type Host struct {
	// Name is the host's name (h1, h2, ...; "client" for the test's own).
	Name string
	// NS is its network namespace's name (`ip netns list`).
	NS string
	// IP is its address on the bridge.
	IP string

	n    *Net
	port string // the switch-side end of its veth pair
}

// ErrUnsupported marks a machine that cannot make network namespaces.
var ErrUnsupported = errors.New("hosts: network namespaces unavailable")

// New makes n hosts and the client host on a fresh /24 in 10.231.0.0/16,
// or skips the test (see the package doc). Host i (1-based) has address
// .i+1 (h1 is 10.231.X.2); the client host is .250.
func New(t testing.TB, n int) *Net {
	t.Helper()
	if n < 1 || n > 200 {
		t.Fatalf("hosts: %d hosts, want 1..200", n)
	}
	nt, err := create(n)
	if nt != nil {
		t.Cleanup(func() {
			if err := nt.Close(); err != nil {
				t.Errorf("hosts: %v", err)
			}
		})
	}
	if errors.Is(err, ErrUnsupported) {
		if os.Getenv("RINGKV_HOSTS_REQUIRED") == "1" {
			t.Fatalf("%v (RINGKV_HOSTS_REQUIRED=1)", err)
		}
		t.Skipf("%v: this test needs root and `ip netns` (iproute2)", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	return nt
}

// create makes the switch and hosts. On an error it returns what it made
// so far (to be closed) with the error.
func create(n int) (*Net, error) {
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("%w: not root", ErrUnsupported)
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnsupported, err)
	}
	var b [3]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, fmt.Errorf("hosts: %w", err)
	}
	tag := hex.EncodeToString(b[:2])
	third := int(b[2])
	nt := &Net{tag: tag, sw: "rkv" + tag + "sw", Subnet: fmt.Sprintf("10.231.%d.0/24", third)}
	if err := ip("netns", "add", nt.sw); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnsupported, err)
	}
	for _, args := range [][]string{
		{"-n", nt.sw, "link", "set", "lo", "up"},
		{"-n", nt.sw, "link", "add", "br0", "type", "bridge"},
		{"-n", nt.sw, "link", "set", "br0", "up"},
	} {
		if err := ip(args...); err != nil {
			return nt, err
		}
	}
	for i := 1; i <= n; i++ {
		h, err := nt.addHost(fmt.Sprintf("h%d", i), fmt.Sprintf("10.231.%d.%d", third, i+1))
		if err != nil {
			return nt, err
		}
		nt.Hosts = append(nt.Hosts, h)
	}
	var err error
	if nt.client, err = nt.addHost("client", fmt.Sprintf("10.231.%d.250", third)); err != nil {
		return nt, err
	}
	if nt.clientNS, err = os.Open("/run/netns/" + nt.client.NS); err != nil {
		return nt, fmt.Errorf("hosts: %w", err)
	}
	return nt, nil
}

// addHost makes a namespace with eth0 at addr/24, cabled to the bridge.
func (nt *Net) addHost(name, addr string) (*Host, error) {
	h := &Host{Name: name, NS: "rkv" + nt.tag + name, IP: addr, n: nt, port: "v" + name}
	if err := ip("netns", "add", h.NS); err != nil {
		return nil, err
	}
	for _, args := range [][]string{
		{"-n", nt.sw, "link", "add", h.port, "type", "veth", "peer", "name", "eth0", "netns", h.NS},
		{"-n", nt.sw, "link", "set", h.port, "master", "br0"},
		{"-n", nt.sw, "link", "set", h.port, "up"},
		{"-n", h.NS, "link", "set", "lo", "up"},
		{"-n", h.NS, "addr", "add", addr + "/24", "dev", "eth0"},
		{"-n", h.NS, "link", "set", "eth0", "up"},
	} {
		if err := ip(args...); err != nil {
			return h, err
		}
	}
	return h, nil
}

// Close kills every process in the hosts' namespaces and deletes the
// namespaces. It returns the errors it met, joined.
func (nt *Net) Close() error {
	var errs []error
	if nt.clientNS != nil {
		errs = append(errs, nt.clientNS.Close())
	}
	hosts := append([]*Host{}, nt.Hosts...)
	if nt.client != nil {
		hosts = append(hosts, nt.client)
	}
	for _, h := range hosts {
		if h != nt.client { // the client host runs no process: only dials
			_, err := h.signalAll(syscall.SIGKILL)
			errs = append(errs, err)
		}
		errs = append(errs, ip("netns", "del", h.NS))
	}
	errs = append(errs, ip("netns", "del", nt.sw))
	return errors.Join(errs...)
}

// DialContext connects from the client host, as net.Dialer.DialContext.
// Use it for every connection a test makes to its hosts (an
// http.Transport's DialContext, the client library's WithDialer).
func (nt *Net) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	type result struct {
		c   net.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			ch <- result{err: fmt.Errorf("hosts: %w", err)}
			return
		}
		defer orig.Close() //nolint:errcheck // read-only
		if err := unix.Setns(int(nt.clientNS.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			ch <- result{err: fmt.Errorf("hosts: enter %s: %w", nt.client.NS, err)}
			return
		}
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		ch <- result{c, err}
		// Back to the namespace the thread came from, to give it back
		// to the scheduler; if that fails the thread stays locked and
		// is discarded when this goroutine returns.
		if unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
	}()
	r := <-ch
	return r.c, r.err
}

// Host returns the host named name (h1, ...), or nil.
func (nt *Net) Host(name string) *Host {
	for _, h := range nt.Hosts {
		if h.Name == name {
			return h
		}
	}
	return nil
}

// Command returns a command that runs name with args on the host.
// `ip netns exec` execs it in place, so the command's process is the
// program's (signals reach it directly).
func (h *Host) Command(name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", h.NS, name}, args...)...) //nolint:gosec // tests run their own binary
}

// LinkDown cuts the host off the switch: nothing reaches it or leaves it
// until LinkUp. Connections stay open on both ends (as with a cut cable)
// and time out by themselves.
func (h *Host) LinkDown() error { return ip("-n", h.n.sw, "link", "set", h.port, "down") }

// LinkUp restores the host's cable.
func (h *Host) LinkUp() error { return ip("-n", h.n.sw, "link", "set", h.port, "up") }

// Freeze stops every process on the host (SIGSTOP); Thaw continues them.
// A frozen host's kernel still answers (TCP handshakes complete, ARP
// replies): only its programs stop, as in a VM whose guest hung. Freeze
// returns once every thread of every process is stopped (the signal is
// asynchronous: on a loaded machine a thread waiting for a CPU stops only
// when it next runs), or fails after freezeWait.
func (h *Host) Freeze() error {
	pids, err := h.signalAll(syscall.SIGSTOP)
	if err != nil {
		return err
	}
	deadline := time.NewTimer(freezeWait)
	defer deadline.Stop()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for _, p := range pids {
		for !stopped(p) {
			select {
			case <-deadline.C:
				return fmt.Errorf("hosts: process %d of %s not stopped %v after SIGSTOP", p, h.Name, freezeWait)
			case <-tick.C:
			}
		}
	}
	return nil
}

// freezeWait bounds how long Freeze waits for the processes to stop.
const freezeWait = 5 * time.Second

// stopped reports whether every thread of process pid is stopped (state T
// or t in /proc), or the process is gone.
func stopped(pid int) bool {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return true // gone
	}
	for _, t := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/stat", pid, t.Name()))
		if err != nil {
			continue // the thread exited
		}
		// The state follows the command name, which is in parentheses
		// and may itself hold spaces or parentheses.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 || i+2 >= len(b) {
			return false
		}
		if st := b[i+2]; st != 'T' && st != 't' {
			return false
		}
	}
	return true
}

// Thaw continues every process Freeze stopped.
func (h *Host) Thaw() error {
	_, err := h.signalAll(syscall.SIGCONT)
	return err
}

// Pids returns the processes running in the host's namespace.
func (h *Host) Pids() ([]int, error) {
	out, err := exec.Command("ip", "netns", "pids", h.NS).Output() //nolint:gosec // our namespace
	if err != nil {
		return nil, fmt.Errorf("hosts: pids of %s: %w", h.NS, err)
	}
	var pids []int
	for _, f := range strings.Fields(string(out)) {
		p, err := strconv.Atoi(f)
		if err != nil {
			return nil, fmt.Errorf("hosts: pids of %s: %q: %w", h.NS, f, err)
		}
		pids = append(pids, p)
	}
	return pids, nil
}

// signalAll sends sig to every process of the host and returns them.
func (h *Host) signalAll(sig syscall.Signal) ([]int, error) {
	pids, err := h.Pids()
	if err != nil {
		return nil, err
	}
	for _, p := range pids {
		if err := syscall.Kill(p, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
			return nil, fmt.Errorf("hosts: signal %d: %w", p, err)
		}
	}
	return pids, nil
}

// ip runs `ip args...`; its error carries ip's stderr.
func ip(args ...string) error {
	var stderr bytes.Buffer
	cmd := exec.Command("ip", args...)
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("hosts: ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return nil
}

// Diagnose describes the network as the kernel sees it, for a failing
// test's log: each namespace's links, addresses and neighbours, the
// bridge's ports, and each host's TCP sockets by state.
func (nt *Net) Diagnose() string {
	var b strings.Builder
	run := func(args ...string) {
		out, err := exec.Command(args[0], args[1:]...).CombinedOutput() //nolint:gosec // diagnostics of our namespaces
		fmt.Fprintf(&b, "$ %s\n%s", strings.Join(args, " "), out)
		if err != nil {
			fmt.Fprintf(&b, "(%v)\n", err)
		}
	}
	run("ip", "-n", nt.sw, "-br", "link")
	for _, h := range append(append([]*Host{}, nt.Hosts...), nt.client) {
		if h == nil {
			continue
		}
		run("ip", "-n", h.NS, "-br", "addr")
		run("ip", "-n", h.NS, "neigh")
		run("ip", "netns", "exec", h.NS, "ss", "-tan", "state", "established", "state", "syn-sent", "state", "syn-recv")
	}
	return b.String()
}
