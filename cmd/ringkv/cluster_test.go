package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/ringkv/ringkv/node"
)

// fakeNode serves canned /api/cluster answers and records the changes it
// was asked for.
type fakeNode struct {
	status func() node.ClusterStatus
	// change answers POSTs: status code and body.
	code int
	body string

	mu   sync.Mutex
	seen []string // "METHOD /path?query"
}

func (f *fakeNode) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.seen = append(f.seen, r.Method+" "+r.URL.RequestURI())
	f.mu.Unlock()
	if r.URL.Path == "/api/cluster/status" {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(f.status()) // test server; the client reads it
		return
	}
	w.WriteHeader(f.code)
	_, _ = w.Write([]byte(f.body)) // test server; the client reads it
}

func (f *fakeNode) requests() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.seen...)
}

func partition(p uint32, pref []string, leader string, converged bool) node.PartitionStatus {
	return node.PartitionStatus{Partition: p, Preference: pref, Hosted: true, Leader: leader, Voters: pref, Converged: converged}
}

// closedAddr returns a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return addr
}

func TestClusterStatusCommand(t *testing.T) {
	a, b := &fakeNode{}, &fakeNode{}
	sa, sb := httptest.NewServer(a), httptest.NewServer(b)
	t.Cleanup(sa.Close)
	t.Cleanup(sb.Close)
	addrA, addrB := strings.TrimPrefix(sa.URL, "http://"), strings.TrimPrefix(sb.URL, "http://")
	members := []node.MemberStats{
		{ID: "a", HTTPAddr: addrA, RPCAddr: "127.0.0.1:1", Liveness: "alive", Status: "joined", Zone: "z1", RingVersion: 7},
		{ID: "b", HTTPAddr: addrB, Liveness: "alive", Status: "joined", RingVersion: 7},
		{ID: "c", Liveness: "dead", Status: "removed"},
		{ID: "d", HTTPAddr: closedAddr(t), Liveness: "alive", Status: "none", RingVersion: 5},
	}
	ab := []string{"a", "b"}
	// Partitions: 0 led by a and converged, 1 led by a and not, 2 led by
	// b and converged, 3 without a leader.
	a.status = func() node.ClusterStatus {
		return node.ClusterStatus{NodeID: "a", RingVersion: 7, PartitionCount: 4, ReplicationFactor: 2, Members: members,
			Partitions: []node.PartitionStatus{
				partition(0, ab, "a", true), partition(1, ab, "a", false),
				partition(2, ab, "b", true), partition(3, ab, "", false),
			}}
	}
	b.status = func() node.ClusterStatus {
		return node.ClusterStatus{NodeID: "b", RingVersion: 7, PartitionCount: 4, ReplicationFactor: 2, Members: members,
			Partitions: []node.PartitionStatus{
				partition(0, ab, "a", true), partition(1, ab, "a", true),
				partition(2, ab, "b", true), partition(3, ab, "", false),
			}}
	}
	var out, errOut bytes.Buffer
	if err := run(t.Context(), []string{"cluster", "status", "--http-addr", addrA}, &out, &errOut); err != nil {
		t.Fatalf("cluster status: %v %s", err, errOut.String())
	}
	got := out.String()
	t.Logf("output:\n%s", got)
	for _, want := range []string{
		"ring version 7, 4 partitions, replication factor 2 (as seen by a)",
		"ID  STATUS   LIVENESS  RING  ZONE  HTTP",
		"a   joined   alive     7     z1    " + addrA,
		"c   removed  dead      -     -     -",
		"d   none     alive     5     -",
		"no status from: d",
		"1 members do not hold ring version 7 yet",
		"partitions converged: 2/4\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	// b is asked once for its view; a (the --http-addr node) once.
	if reqs := b.requests(); len(reqs) != 1 || reqs[0] != "GET /api/cluster/status" {
		t.Errorf("requests to b: got %v, want one status", reqs)
	}
	if reqs := a.requests(); len(reqs) != 1 {
		t.Errorf("requests to a: got %v, want one status", reqs)
	}

	// A ring version b does not share makes b's partitions unconverged.
	b.status = func() node.ClusterStatus {
		return node.ClusterStatus{NodeID: "b", RingVersion: 6, Members: members,
			Partitions: []node.PartitionStatus{{}, {}, partition(2, ab, "b", true), {}}}
	}
	out.Reset()
	if err := run(t.Context(), []string{"cluster", "--http-addr", addrA, "status"}, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "partitions converged: 1/4\n") || !strings.Contains(out.String(), "b   joined   alive     6") {
		t.Errorf("with b on another ring version: got\n%s\nwant 1/4 converged", out.String())
	}
}

func TestClusterChangeCommands(t *testing.T) {
	f := &fakeNode{code: http.StatusOK, body: `{"ok":true,"ring_version":9}`}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	addr := strings.TrimPrefix(srv.URL, "http://")
	for _, sub := range []string{"leave", "remove", "admit"} {
		var out, errOut bytes.Buffer
		if err := run(t.Context(), []string{"cluster", sub, "n1", "--http-addr", addr}, &out, &errOut); err != nil {
			t.Fatalf("%s: %v", sub, err)
		}
		if want := "OK: " + sub + " n1, ring version 9\n"; out.String() != want {
			t.Errorf("%s: got %q, want %q", sub, out.String(), want)
		}
	}
	f.body = `{"ok":true,"ring_version":9,"noop":true,"detail":"n1 is already joined (ring version 9)"}`
	var noop, errOut bytes.Buffer
	if err := run(t.Context(), []string{"cluster", "admit", "n1", "--http-addr", addr}, &noop, &errOut); err != nil {
		t.Fatal(err)
	}
	if want := "OK: admit n1 changed nothing: n1 is already joined (ring version 9)\n"; noop.String() != want {
		t.Errorf("no-op admit: got %q, want %q", noop.String(), want)
	}
	want := []string{"POST /api/cluster/leave?id=n1", "POST /api/cluster/remove?id=n1", "POST /api/cluster/admit?id=n1", "POST /api/cluster/admit?id=n1"}
	if got := f.requests(); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("requests: got %v, want %v", got, want)
	}

	for _, tc := range []struct {
		name       string
		code       int
		body, want string
	}{
		{"refused", http.StatusConflict, `{"error":"remove n1: partitions [3 9] would have fewer than a majority"}`, "HTTP 409: remove n1: partitions [3 9]"},
		{"not json", http.StatusBadGateway, "upstream down\n", "HTTP 502: upstream down"},
		{"bad answer", http.StatusOK, "{", "bad answer"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f.code, f.body = tc.code, tc.body
			var out, errOut bytes.Buffer
			err := run(t.Context(), []string{"cluster", "remove", "n1", "--http-addr", addr}, &out, &errOut)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error with %q", err, tc.want)
			}
		})
	}
	var out bytes.Buffer
	if err := run(t.Context(), []string{"cluster", "status", "--http-addr", closedAddr(t), "--timeout", "2s"}, &out, &out); err == nil {
		t.Fatal("status against nothing succeeded")
	}
}

func TestClusterUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"no subcommand", []string{"cluster"}},
		{"unknown subcommand", []string{"cluster", "frob"}},
		{"remove without id", []string{"cluster", "remove"}},
		{"leave with two ids", []string{"cluster", "leave", "a", "b"}},
		{"status with an id", []string{"cluster", "status", "n1"}},
		{"bad flag", []string{"cluster", "status", "--nope"}},
		{"bad address", []string{"cluster", "status", "--http-addr", "bad host:1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			err := run(t.Context(), tc.args, &out, &errOut)
			if !errors.Is(err, errUsage) {
				t.Fatalf("got %v, want a usage error", err)
			}
		})
	}
}

// TestHTTPAddrFlag: the cluster, auth, user and role commands take a
// node's HTTP address as --http-addr or RINGKV_HTTP_ADDR, never from
// RINGKV_ADDR (the data commands' drpc address, so one environment serves
// both kinds of command). --addr still works, with a warning.
func TestHTTPAddrFlag(t *testing.T) {
	f := &fakeNode{code: http.StatusOK, body: `{"ok":true,"ring_version":9}`}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	addr := strings.TrimPrefix(srv.URL, "http://")
	t.Setenv("RINGKV_ADDR", closedAddr(t)) // a drpc address: not for these commands
	t.Setenv("RINGKV_HTTP_ADDR", addr)
	var out, errOut bytes.Buffer
	if err := run(t.Context(), []string{"cluster", "admit", "n1"}, &out, &errOut); err != nil {
		t.Fatalf("with RINGKV_HTTP_ADDR: %v", err)
	}
	if errOut.Len() != 0 {
		t.Errorf("stderr: %q, want nothing", errOut.String())
	}

	t.Setenv("RINGKV_HTTP_ADDR", closedAddr(t))
	out.Reset()
	if err := run(t.Context(), []string{"cluster", "admit", "n1", "--addr", addr}, &out, &errOut); err != nil {
		t.Fatalf("with the deprecated --addr: %v", err)
	}
	if !strings.Contains(errOut.String(), "--http-addr") {
		t.Errorf("deprecated --addr: stderr %q, want a warning naming --http-addr", errOut.String())
	}
	for _, args := range [][]string{
		{"cluster", "status", "--addr", addr, "--http-addr", addr},
		{"auth", "status", "--http-addr", addr, "--addr", addr},
	} {
		if err := run(t.Context(), args, &out, &errOut); !errors.Is(err, errUsage) || !strings.Contains(err.Error(), "--http-addr") {
			t.Errorf("%v: got %v, want a usage error naming --http-addr", args, err)
		}
	}
	if got := f.requests(); len(got) != 2 {
		t.Errorf("requests: %v, want the two admits", got)
	}
}
