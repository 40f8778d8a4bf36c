package testcluster

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/ringkv/ringkv/client"
	"github.com/ringkv/ringkv/internal/hosts"
)

// TestHostsCluster runs three insecure nodes on three hosts, each
// listening on 0.0.0.0 of its host with --advertise: every member is
// known by its host's address, clients on another host read and write
// through any node, and a quorum keeps serving while one host is cut off.
func TestHostsCluster(t *testing.T) {
	nt := hosts.New(t, 3)
	c := StartOptions(t, Options{Nodes: 3, Hosts: nt, NoRace: true})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	s, err := c.Nodes[0].Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range s.Members {
		var h *hosts.Host
		for _, nd := range c.Nodes {
			if nd.ID == m.ID {
				h = nd.Host()
			}
		}
		if h == nil || m.RPCAddr != net.JoinHostPort(h.IP, "9001") || m.HTTPAddr != net.JoinHostPort(h.IP, "8081") {
			t.Errorf("member %s advertises rpc %q http %q; its host is %v", m.ID, m.RPCAddr, m.HTTPAddr, h)
		}
	}

	cl, err := client.New([]string{c.Nodes[1].RPCAddr}, client.WithDialer(c.Dialer()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close() //nolint:errcheck // test
	if err := cl.Set(ctx, "hosts:a", []byte("1"), client.WithConsistency(client.Linearizable)); err != nil {
		t.Fatalf("linearizable set: %v", err)
	}
	if code, err := c.Nodes[2].Set(ctx, "hosts:b", "2", "all"); err != nil || code != 200 {
		t.Fatalf("set at ALL over HTTP: %d %v", code, err)
	}

	// One host cut off: the other two are a quorum of every partition.
	if err := c.Nodes[2].Host().LinkDown(); err != nil {
		t.Fatal(err)
	}
	c.WaitFor(30*time.Second, "writes with n3's host cut off", func(ctx context.Context) error {
		return cl.Set(ctx, "hosts:c", []byte("3"), client.WithConsistency(client.Linearizable))
	})
	if err := c.Nodes[2].Host().LinkUp(); err != nil {
		t.Fatal(err)
	}
	c.WaitConverged(30 * time.Second)
	for key, want := range map[string]string{"hosts:a": "1", "hosts:b": "2", "hosts:c": "3"} {
		c.WaitFor(30*time.Second, "n3 to hold "+key, func(ctx context.Context) error {
			got, code, err := c.Nodes[2].Get(ctx, key, "one")
			if err != nil || code != 200 || got != want {
				return fmt.Errorf("read %s: %q (HTTP %d): %w", key, got, code, err)
			}
			return nil
		})
	}
}

// TestHostsServeNeedsAdvertise: a node listening on every interface
// without --advertise would tell its peers 0.0.0.0; serve refuses to
// start, naming the flag.
func TestHostsServeNeedsAdvertise(t *testing.T) {
	nt := hosts.New(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := nt.Hosts[0].Command(BinaryNoRace(t), "serve", "--id", "n1", "--data", t.TempDir(),
		"--http", "0.0.0.0:8081", "--rpc", "0.0.0.0:9001", "--gossip", "0.0.0.0:7001", "--insecure")
	cmd = exec.CommandContext(ctx, cmd.Path, cmd.Args[1:]...) //nolint:gosec // our binary
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "--advertise") {
		t.Fatalf("serve on 0.0.0.0 without --advertise: %v\n%s", err, out)
	}
}
