package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// TestRingSimulate runs the simulation small (the race detector slows the
// claim ~100x; ring's own TestClaimAtScale runs it at 200 and 1,000
// members) and reads both of its outputs.
func TestRingSimulate(t *testing.T) {
	args := []string{"ring", "simulate", "--members", "12", "--partitions", "64", "--zones", "3", "--seed", "7"}
	var out, errOut bytes.Buffer
	if err := run(t.Context(), args, &out, &errOut); err != nil {
		t.Fatalf("ring simulate: %v\n%s%s", err, out.String(), errOut.String())
	}
	for _, want := range []string{
		"ring simulate: 12 members, P=64, N=3, zones 3, seed 7",
		"build: 12 joins",
		"join of m0012:",
		"leave of m",
		"within bounds",
	} {
		if !strings.Contains(out.String(), want) {
			t.Fatalf("got output\n%s\nwant it to contain %q", out.String(), want)
		}
	}

	out.Reset()
	if err := run(t.Context(), append(args, "--json"), &out, &errOut); err != nil {
		t.Fatalf("ring simulate --json: %v", err)
	}
	var rep simReport
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("decode %s: %v", out.String(), err)
	}
	if !rep.WithinBounds || rep.Balance.Members != 12 || rep.Join.Balance.Members != 13 || rep.Leave.Balance.Members != 11 {
		t.Fatalf("got %+v, want within bounds at 12, 13 and 11 members", rep)
	}
	if rep.Join.Member != "m0012" || rep.Join.Others != 0 || rep.Join.Slots < rep.Join.Optimum || rep.Join.Ratio > simMovementBound {
		t.Fatalf("join: got %+v, want slots only to m0012, at least the optimum, ratio <= %.1f", rep.Join, simMovementBound)
	}
	if rep.Leave.Others != 0 || rep.Leave.Slots != rep.Leave.Optimum || rep.Leave.Ratio != 1 {
		t.Fatalf("leave: got %+v, want only the leaver's slots moved", rep.Leave)
	}
	if rep.Build <= 0 || rep.SlowestJoin < rep.MedianJoin {
		t.Fatalf("got build %v, median %v, slowest %v", rep.Build, rep.MedianJoin, rep.SlowestJoin)
	}
}

func TestRingSimulateBadInput(t *testing.T) {
	for _, args := range [][]string{
		{"ring"},
		{"ring", "status"},
		{"ring", "simulate", "extra"},
		{"ring", "simulate", "--members", "0"},
		{"ring", "simulate", "--members", "10001"},
		{"ring", "simulate", "--partitions", "100"},
		{"ring", "simulate", "--partitions", "0"},
		{"ring", "simulate", "--rf", "8"},
		{"ring", "simulate", "--rf", "0"},
		{"ring", "simulate", "--zones", "-1"},
		{"ring", "simulate", "--members", "x"},
	} {
		var out, errOut bytes.Buffer
		if err := run(t.Context(), args, &out, &errOut); !errors.Is(err, errUsage) {
			t.Errorf("%q: got %v, want a usage error", args, err)
		}
	}
}

// TestSimReportOutsideBounds checks the verdict line of a report whose
// figures break the bounds: the command prints it and fails.
func TestSimReportOutsideBounds(t *testing.T) {
	bad := simBalance{Members: 4, FairReplicas: 48, MinReplicas: 40, MaxReplicas: 56, ReplicaDeviation: 16.0 / 48}
	if withinBalance(bad) {
		t.Fatalf("%+v: got within, want outside", bad)
	}
	if ok := withinBalance(simBalance{FairReplicas: 4.5, MinReplicas: 4, MaxReplicas: 5, ReplicaDeviation: 0.5 / 4.5}); !ok {
		t.Fatal("floor and ceil of fair: got outside, want within")
	}
	var out bytes.Buffer
	simReport{Balance: bad}.print(&out)
	if !strings.Contains(out.String(), "OUTSIDE bounds") {
		t.Fatalf("got\n%s\nwant the verdict OUTSIDE bounds", out.String())
	}
}
