package main

import (
	"bytes"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/ringkv/ringkv/node"
)

// cluster drain and undrain find the member's HTTP address through the
// node given and send it the request; status shows a draining member.
func TestClusterDrainCommands(t *testing.T) {
	f := &fakeNode{code: http.StatusOK, body: `{"node_id":"n2","draining":true,"done":true,"leading":[],"took":"1.2s"}`}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	addr := strings.TrimPrefix(srv.URL, "http://")
	f.status = func() node.ClusterStatus {
		return node.ClusterStatus{NodeID: "n1", RingVersion: 3, Members: []node.MemberStats{
			{ID: "n1", HTTPAddr: addr, Liveness: "alive", Status: "joined", RingVersion: 3},
			{ID: "n2", HTTPAddr: addr, Liveness: "alive", Status: "joined", RingVersion: 3, Draining: true},
			{ID: "n3", Liveness: "dead", Status: "joined"},
		}}
	}
	var out, errOut bytes.Buffer
	if err := run(t.Context(), []string{"cluster", "drain", "n2", "--http-addr", addr, "--timeout", "5s"}, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "OK: n2 drained in 1.2s: leads no group") {
		t.Errorf("drain: got %q", out.String())
	}
	out.Reset()
	if err := run(t.Context(), []string{"cluster", "undrain", "n2", "--http-addr", addr}, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	if out.String() != "OK: n2 takes client requests again\n" {
		t.Errorf("undrain: got %q", out.String())
	}
	got := strings.Join(f.requests(), ",")
	if !strings.Contains(got, "POST /api/cluster/drain?id=n2&timeout=5s") || !strings.Contains(got, "POST /api/cluster/undrain?id=n2") {
		t.Errorf("requests: %s", got)
	}
	for _, tc := range []struct{ args, want string }{
		{"drain n3", "the member is dead"},
		{"drain n9", `knows no member "n9"`},
		{"drain", "takes one member id"},
	} {
		err := run(t.Context(), append(strings.Fields("cluster "+tc.args), "--http-addr", addr), &out, &errOut)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("cluster %s: got %v, want %q", tc.args, err, tc.want)
		}
	}
	out.Reset()
	if err := run(t.Context(), []string{"cluster", "status", "--http-addr", addr}, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "joined,draining") {
		t.Errorf("status does not show n2 draining:\n%s", out.String())
	}
}

func TestVersionCommand(t *testing.T) {
	var out bytes.Buffer
	if err := run(t.Context(), []string{"version"}, &out, &out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"ringkv dev", "wire protocol: 1..5 ", "data format: writes 2, reads 1, 2"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("version: %q lacks %q", out.String(), want)
		}
	}
	if err := run(t.Context(), []string{"version", "x"}, &out, &out); !errors.Is(err, errUsage) {
		t.Errorf("version x: got %v, want a usage error", err)
	}
}
