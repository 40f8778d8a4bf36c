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
