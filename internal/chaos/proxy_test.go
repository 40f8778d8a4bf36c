package chaos

import (
	"bufio"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"testing"
	"time"
)

// echoServer answers every line with the same line until the test ends.
func echoServer(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = lis.Close() })
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			go func() {
				defer func() { _ = c.Close() }()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	return lis.Addr().String()
}

func newProxy(t *testing.T) *Proxy {
	t.Helper()
	p, err := NewProxy(echoServer(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// roundTrip sends a line and reads the answer within d.
func roundTrip(c net.Conn, d time.Duration) (string, error) {
	_ = c.SetDeadline(time.Now().Add(d))
	if _, err := c.Write([]byte("ping\n")); err != nil {
		return "", err
	}
	return bufio.NewReader(c).ReadString('\n')
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func TestProxyPass(t *testing.T) {
	p := newProxy(t)
	c := dial(t, p.Addr())
	if got, err := roundTrip(c, 5*time.Second); err != nil || got != "ping\n" {
		t.Fatalf("got %q, %v; want ping", got, err)
	}
}

func TestProxyBlackholeSilencesOpenAndNewConnections(t *testing.T) {
	p := newProxy(t)
	open := dial(t, p.Addr())
	if _, err := roundTrip(open, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	p.Set(Blackhole, 0)
	if _, err := roundTrip(open, 300*time.Millisecond); !isTimeout(err) {
		t.Fatalf("open connection through a blackhole: got err %v, want a timeout", err)
	}
	fresh := dial(t, p.Addr())
	if _, err := roundTrip(fresh, 300*time.Millisecond); !isTimeout(err) {
		t.Fatalf("new connection through a blackhole: got err %v, want a timeout", err)
	}
	p.Set(Pass, 0)
	// The silenced connections lost bytes: healing closes them.
	if _, err := roundTrip(open, 5*time.Second); err == nil || isTimeout(err) {
		t.Fatalf("silenced connection after heal: got err %v, want it closed", err)
	}
	healed := dial(t, p.Addr())
	if got, err := roundTrip(healed, 5*time.Second); err != nil || got != "ping\n" {
		t.Fatalf("after heal: got %q, %v; want ping", got, err)
	}
}

func TestProxyDropClosesConnections(t *testing.T) {
	p := newProxy(t)
	open := dial(t, p.Addr())
	if _, err := roundTrip(open, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	p.Set(Drop, 0)
	if _, err := roundTrip(open, 5*time.Second); err == nil || isTimeout(err) {
		t.Fatalf("open connection after drop: got err %v, want it closed", err)
	}
	fresh := dial(t, p.Addr())
	if _, err := roundTrip(fresh, 5*time.Second); err == nil || isTimeout(err) {
		t.Fatalf("new connection while dropping: got err %v, want it closed", err)
	}
	if p.Mode() != Drop {
		t.Fatalf("mode %v, want drop", p.Mode())
	}
}

func TestProxyDelayStillDelivers(t *testing.T) {
	p := newProxy(t)
	p.Set(Delay, 20*time.Millisecond)
	c := dial(t, p.Addr())
	if got, err := roundTrip(c, 5*time.Second); err != nil || got != "ping\n" {
		t.Fatalf("got %q, %v; want ping", got, err)
	}
}

func TestNetTopologies(t *testing.T) {
	ids := []string{"n1", "n2", "n3", "n4", "n5"}
	rpc := map[string]string{}
	for _, id := range ids {
		rpc[id] = "127.0.0.1:1" // never dialed here
	}
	n, err := NewNet(ids, rpc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Close() })
	cut := func() map[[2]string]bool {
		out := map[[2]string]bool{}
		for pair, p := range n.proxies {
			if p.Mode() != Pass {
				out[pair] = true
			}
		}
		return out
	}
	// reachable counts, for each node, the nodes it reaches (itself too).
	reachable := func() map[string]int {
		c := cut()
		out := map[string]int{}
		for _, a := range ids {
			out[a] = 1
			for _, b := range ids {
				if a != b && !c[[2]string{a, b}] {
					out[a]++
				}
			}
		}
		return out
	}
	rng := newRand(1)

	n.Isolate(Blackhole, "n3")
	if r := reachable(); r["n3"] != 1 || r["n1"] != 4 {
		t.Errorf("isolate n3: reach %v", r)
	}
	n.Split(rng, Blackhole, ids)
	minority := 0
	for _, k := range reachable() {
		if k == 2 {
			minority++
		}
	}
	if minority != 2 {
		t.Errorf("split of 5: %d nodes in a minority of 2, want 2 (%v)", minority, reachable())
	}
	if err := n.Bridge(rng, Blackhole, ids); err != nil {
		t.Fatal(err)
	}
	counts := map[int]int{}
	for _, k := range reachable() {
		counts[k]++
	}
	if counts[5] != 1 || counts[3] != 4 {
		t.Errorf("bridge: reach counts %v, want one node reaching 5 and four reaching 3", counts)
	}
	n.MajoritiesRing(rng, Blackhole, ids)
	for id, k := range reachable() {
		if k != 3 {
			t.Errorf("majorities ring: %s reaches %d, want 3", id, k)
		}
	}
	n.Heal()
	if c := cut(); len(c) != 0 {
		t.Errorf("after heal %d links are cut", len(c))
	}
	if got := n.Overrides("n1"); got == "" {
		t.Error("no overrides for n1")
	}
}

func newRand(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, seed)) }
