package chaos

import (
	"math/rand/v2"
	"testing"
)

func TestKeySpaceRetiresKeys(t *testing.T) {
	var ks keySpace
	ks.init(1, 10, 2)
	rng := rand.New(rand.NewPCG(1, 2))

	k := ks.pick(rng)
	if got := ks.pick(rng); got != k {
		t.Fatalf("second pick %s, want %s still active", got.name, k.name)
	}
	ks.unknownOutcome(k)
	if got := ks.pick(rng); got != k {
		t.Fatalf("one unknown outcome retired %s (limit 2)", k.name)
	}
	ks.unknownOutcome(k)
	fresh := ks.pick(rng)
	if fresh == k {
		t.Fatalf("%s still handed out after 2 unknown outcomes", k.name)
	}
	// A late unknown outcome on a retired key leaves the fresh one alone.
	ks.unknownOutcome(k)
	if got := ks.pick(rng); got != fresh {
		t.Fatalf("late outcome on a retired key replaced %s with %s", fresh.name, got.name)
	}
	// The operation limit retires a key too: fresh has had 2 picks.
	for range 8 {
		ks.pick(rng)
	}
	if got := ks.pick(rng); got == fresh {
		t.Fatalf("%s handed out beyond 10 operations", fresh.name)
	}
}

func TestAlreadyDone(t *testing.T) {
	for _, tc := range []struct {
		op, body string
		want     bool
	}{
		{"leave", `{"error":"x","member_status":"leaving","ring_version":9}`, true},
		{"leave", `{"error":"x","member_status":"removed"}`, true},
		{"leave", `{"error":"partitions [3] would have fewer than a majority"}`, false},
		{"remove", `{"error":"x","member_status":"leaving"}`, false},
		{"remove", `{"error":"x","member_status":"removed"}`, true},
		{"admit", `{"error":"x","member_status":"joined"}`, false},
		{"leave", `not json`, false},
	} {
		if got := alreadyDone(tc.op, []byte(tc.body)); got != tc.want {
			t.Errorf("alreadyDone(%s, %s): got %v, want %v", tc.op, tc.body, got, tc.want)
		}
	}
}
