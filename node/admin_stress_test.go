package node

import (
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ringkv/ringkv/ring"
)

// stressOp is one membership change sent to the cluster and its answer.
type stressOp struct {
	via  string // the node it was sent to
	op   string // leave, remove, admit
	id   string
	code int
	ans  ChangeAnswer
	err  string
}

// TestClusterChangesStress sends 200 membership changes (leave, remove,
// admit) concurrently through every node of a five-node cluster while the
// claimant joins a sixth. Every change answered 200 must be in the final
// ring: replaying them in the order of the ring versions they made, with
// the claimant's join of n6 in the one version none of them made, gives
// the final ring exactly; every refused change (409) made no version; a
// change whose outcome the node could not learn in time (504) may fill a
// version; and all six nodes end on the same ring.
func TestClusterChangesStress(t *testing.T) {
	if testing.Short() {
		t.Skip("starts six nodes")
	}
	tweak := func(c *Config) { c.Ring = ring.Config{Partitions: 16, ReplicationFactor: 3} }
	nodes := startClusterWith(t, 5, tweak)
	start := nodes[0].Gossip().Ring()
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d, starting at ring version %d", seed, start.Version())

	const perNode = 40 // 5 x 40 = 200 changes
	ids := []string{"n1", "n2", "n3", "n4", "n5"}
	var mu sync.Mutex
	var ops []stressOp
	var wg sync.WaitGroup
	for w, nd := range nodes {
		rng := rand.New(rand.NewPCG(seed, uint64(w)))
		addr := nd.HTTPAddr()
		wg.Go(func() {
			for range perNode {
				o := stressOp{via: nd.ID(), op: []string{"leave", "remove", "admit"}[rng.IntN(3)], id: ids[rng.IntN(len(ids))]}
				var out struct {
					ChangeAnswer
					Error string `json:"error"`
				}
				o.code = postJSON(t, "http://"+addr+"/api/cluster/"+o.op+"?"+url.Values{"id": {o.id}}.Encode(), &out)
				o.ans, o.err = out.ChangeAnswer, out.Error
				mu.Lock()
				ops = append(ops, o)
				mu.Unlock()
			}
		})
	}
	// The sixth node joins while the changes run; the claimant joins it.
	n6, err := Open(testNodeConfig(t, 6, t.TempDir(), []string{nodes[0].GossipAddr()}, tweak), Deps{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n6.Close() }) // closed before the others' cleanup
	wg.Wait()
	// The claimant is the lowest-ID Joined member: make sure there is one,
	// so that n6 is joined even if every other member left.
	var out struct {
		ChangeAnswer
		Error string `json:"error"`
	}
	code := postJSON(t, "http://"+nodes[0].HTTPAddr()+"/api/cluster/admit?id=n1", &out)
	ops = append(ops, stressOp{via: "n1", op: "admit", id: "n1", code: code, ans: out.ChangeAnswer, err: out.Error})
	all := append(slices.Clone(nodes), n6)
	waitUntil(t, 60*time.Second, "n6 joined and every node on one ring", func() bool {
		r := nodes[0].Gossip().Ring()
		if m, ok := r.Member("n6"); !ok || m.Status != ring.Joined {
			return false
		}
		for _, nd := range all {
			if nd.Gossip().Ring().Hash() != r.Hash() {
				return false
			}
		}
		return true
	})
	final := nodes[0].Gossip().Ring()

	// Every answer is 200, 409 or 504 (the change may or may not have been
	// made); no change is lost or made twice.
	made := map[uint64]stressOp{}
	var unknown []stressOp
	counts := map[int]int{}
	for _, o := range ops {
		counts[o.code]++
		switch o.code {
		case http.StatusOK:
			if o.ans.Noop {
				continue
			}
			if prev, dup := made[o.ans.RingVersion]; dup {
				t.Fatalf("ring version %d made twice: %+v and %+v", o.ans.RingVersion, prev, o)
			}
			made[o.ans.RingVersion] = o
		case http.StatusConflict:
			if o.err == "" {
				t.Errorf("%+v: a 409 without an error", o)
			}
		case http.StatusGatewayTimeout:
			unknown = append(unknown, o)
		default:
			t.Errorf("%s %s via %s: got %d %q, want 200, 409 or 504", o.op, o.id, o.via, o.code, o.err)
		}
	}
	// Replay: each version no acknowledged change made was made by the
	// claimant's join of n6 (exactly once) or by a change whose outcome
	// was unknown (each at most once); search for an assignment that
	// gives the final ring.
	if !replay(start, final, made, unknown) {
		t.Fatalf("no replay of the %d acknowledged changes (with the join of n6 and any of the %d of unknown outcome) gives the cluster's ring %v",
			len(made), len(unknown), final)
	}
	t.Logf("%d changes: %d answered 200 (%d made a ring version), %d refused with 409, %d of unknown outcome (504); ring version %d -> %d: %v",
		len(ops), counts[http.StatusOK], len(made), counts[http.StatusConflict], counts[http.StatusGatewayTimeout], start.Version(), final.Version(), final)
}

// apply makes o's change to r, as the node would.
func apply(r *ring.Ring, o stressOp) (*ring.Ring, error) {
	switch o.op {
	case "leave":
		return r.Leave(o.id)
	case "remove":
		return r.Remove(o.id)
	default:
		return r.Join(ring.Member{ID: o.id})
	}
}

// replay reports whether the versions from start to final can be made by
// the acknowledged changes (each at the version it answered), the join of
// n6 once, and changes of unknown outcome at most once each.
func replay(start, final *ring.Ring, made map[uint64]stressOp, unknown []stressOp) bool {
	used := make([]bool, len(unknown))
	var step func(r *ring.Ring, joined bool) bool
	step = func(r *ring.Ring, joined bool) bool {
		v := r.Version() + 1
		if r.Version() == final.Version() {
			return joined && r.Hash() == final.Hash()
		}
		if o, ok := made[v]; ok {
			next, err := apply(r, o)
			return err == nil && step(next, joined)
		}
		if !joined {
			if next, err := r.Join(ring.Member{ID: "n6"}); err == nil && step(next, true) {
				return true
			}
		}
		for i, o := range unknown {
			if used[i] {
				continue
			}
			next, err := apply(r, o)
			if err != nil {
				continue
			}
			used[i] = true
			if step(next, joined) {
				return true
			}
			used[i] = false
		}
		return false
	}
	return step(start, false)
}
