package chaos

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestCheckLinearizable(t *testing.T) {
	set := func(c int, v string, call, ret int64) Op {
		return Op{Client: c, Key: "k", Kind: OpSet, Value: v, Outcome: OK, Call: call, Return: ret}
	}
	get := func(c int, v string, found bool, call, ret int64) Op {
		return Op{Client: c, Key: "k", Kind: OpGet, Value: v, Found: found, Outcome: OK, Call: call, Return: ret}
	}
	cas := func(c int, exp, v string, swapped bool, call, ret int64) Op {
		return Op{Client: c, Key: "k", Kind: OpCAS, Expected: exp, Value: v, Swapped: swapped, Outcome: OK, Call: call, Return: ret}
	}
	unknown := func(op Op) Op { op.Outcome = Unknown; return op }
	cases := []struct {
		name string
		ops  []Op
		want bool
	}{
		{"read your write", []Op{set(0, "a", 0, 10), get(1, "a", true, 20, 30)}, true},
		{"absent before any write", []Op{get(0, "", false, 0, 10), set(1, "a", 20, 30)}, true},
		{"stale read after a completed write", []Op{set(0, "a", 0, 10), set(0, "b", 20, 30), get(1, "a", true, 40, 50)}, false},
		{"concurrent read may see either", []Op{set(0, "a", 0, 10), set(0, "b", 20, 60), get(1, "a", true, 30, 40)}, true},
		{"cas swaps on match", []Op{set(0, "a", 0, 10), cas(1, "a", "b", true, 20, 30), get(0, "b", true, 40, 50)}, true},
		{"cas cannot swap on mismatch", []Op{set(0, "a", 0, 10), cas(1, "x", "b", true, 20, 30)}, false},
		{"cas mismatch must not match", []Op{set(0, "a", 0, 10), cas(1, "a", "b", false, 20, 30)}, false},
		{"unknown write may apply later", []Op{unknown(set(0, "a", 0, 10)), get(1, "", false, 20, 30), get(1, "a", true, 40, 50)}, true},
		{"unknown write may never apply", []Op{set(1, "z", 0, 5), unknown(set(0, "a", 6, 10)), get(1, "z", true, 20, 30)}, true},
		{"unknown cas applied", []Op{set(1, "a", 0, 5), unknown(cas(0, "a", "b", false, 6, 10)), get(1, "b", true, 20, 30)}, true},
		{"value from nowhere", []Op{set(0, "a", 0, 10), get(1, "q", true, 20, 30)}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res := CheckLinearizable(tc.ops, 5*time.Second, "")
			if got := res.Linearizable(); got != tc.want {
				t.Errorf("linearizable = %v, want %v (%+v)", got, tc.want, res)
			}
		})
	}
}

func TestCheckLinearizableSavesEvidence(t *testing.T) {
	dir := t.TempDir()
	ops := []Op{
		{Client: 0, Key: "a/b", Kind: OpSet, Value: "1", Outcome: OK, Call: 0, Return: 10, Via: "client"},
		{Client: 1, Key: "a/b", Kind: OpGet, Value: "2", Found: true, Outcome: OK, Call: 20, Return: 30, Via: "n1"},
	}
	res := CheckLinearizable(ops, 5*time.Second, dir)
	if res.Linearizable() || res.Illegal != 1 || len(res.BadKeys) != 1 {
		t.Fatalf("got %+v, want one illegal key", res)
	}
	for _, f := range []string{"a_b.html", "a_b.history.json"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("evidence %s: %v", f, err)
		}
	}
}

func TestSummaryLine(t *testing.T) {
	for _, tc := range []struct {
		name   string
		secure bool
		want   []string
		absent string
	}{
		{name: "plain", want: []string{"seed=7 duration=", "get/ok=3", "kill=1", "linearizable=yes", "lost=0", "p50=", "p99="}, absent: "secure"},
		{name: "secure", secure: true, want: []string{"seed=7 secure=yes duration=", "get/ok=3", "linearizable=yes"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := Result{Seed: 7, Secure: tc.secure, Ops: map[string]int64{"get/ok": 3}, Faults: map[string]int{"kill": 1}, Converged: true}
			got := r.Summary()
			for _, want := range tc.want {
				if !strings.Contains(got, want) {
					t.Errorf("summary %q lacks %q", got, want)
				}
			}
			if tc.absent != "" && strings.Contains(got, tc.absent) {
				t.Errorf("summary %q has %q", got, tc.absent)
			}
		})
	}
}
