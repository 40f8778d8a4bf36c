package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/ringkv/ringkv/ring"
)

// The bounds ringkv ring simulate checks (issue 22): every member within
// 10% of its fair share of replicas (or one slot of it), and a join moving
// at most 1.1x the slots the newcomer had to take.
const (
	simBalanceBound  = 0.10
	simMovementBound = 1.10
	// simMaxMembers keeps a typo from starting an hour of computation:
	// building a ring of M members costs M claims of O(P*N) and more.
	simMaxMembers = 10_000
)

// ringCommand runs `ringkv ring simulate [flags]`: the claim of package ring
// run in this process on a made-up cluster, no node involved.
func ringCommand(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "simulate" {
		return fmt.Errorf("%w: ring needs a subcommand: simulate", errUsage)
	}
	fs := flag.NewFlagSet("ring simulate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c simConfig
	fs.IntVar(&c.Members, "members", 1000, "members joined one at a time before the measured join and leave")
	fs.IntVar(&c.Partitions, "partitions", 4096, "P, a power of two in [1, 65536]; at least 4x --members to balance within 10%")
	fs.IntVar(&c.RF, "rf", 3, "N, the replication factor, in [1, 7]")
	fs.IntVar(&c.Zones, "zones", 0, "zones the members are spread over at random (0: none declared)")
	fs.Uint64Var(&c.Seed, "seed", 1, "seed of the join order, the zones and the member that leaves")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	pos, err := parseInterleaved(fs, args[1:])
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return fmt.Errorf("%w: ring simulate takes no arguments, got %q", errUsage, pos)
	}
	rep, err := simulate(c)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return fmt.Errorf("write report: %w", err)
		}
	} else {
		rep.print(stdout)
	}
	if !rep.WithinBounds {
		return errors.New("the claim is outside its bounds: see the report")
	}
	return nil
}

// simConfig is what ringkv ring simulate builds.
type simConfig struct {
	Members    int    `json:"members"`
	Partitions int    `json:"partitions"`
	RF         int    `json:"rf"`
	Zones      int    `json:"zones"`
	Seed       uint64 `json:"seed"`
}

// simBalance is ring.Balance with its deviations, for the report.
type simBalance struct {
	Members          int     `json:"members"`
	FairReplicas     float64 `json:"fair_replicas"`
	MinReplicas      int     `json:"min_replicas"`
	MaxReplicas      int     `json:"max_replicas"`
	ReplicaDeviation float64 `json:"replica_deviation"`
	FairPrimaries    float64 `json:"fair_primaries"`
	MinPrimaries     int     `json:"min_primaries"`
	MaxPrimaries     int     `json:"max_primaries"`
	PrimaryDeviation float64 `json:"primary_deviation"`
}

func newSimBalance(r *ring.Ring) simBalance {
	b := r.Balance()
	return simBalance{
		Members: b.Members, FairReplicas: b.FairReplicas, MinReplicas: b.MinReplicas, MaxReplicas: b.MaxReplicas,
		ReplicaDeviation: b.ReplicaDeviation(), FairPrimaries: b.FairPrimaries, MinPrimaries: b.MinPrimaries,
		MaxPrimaries: b.MaxPrimaries, PrimaryDeviation: b.PrimaryDeviation(),
	}
}

// simChange is one measured transition.
type simChange struct {
	Member string `json:"member"`
	// Slots is the replica slots that changed member; Optimum the fewest
	// that had to (a join: the newcomer's floor of fair share; a leave:
	// the leaver's slots); Others the changed slots that did not go to
	// the newcomer or come from the leaver.
	Slots   int     `json:"slots_moved"`
	Optimum int     `json:"optimum"`
	Others  int     `json:"other_moves"`
	Ratio   float64 `json:"ratio"`
	// Copies is the replicas that have to be built: data moved.
	Copies  int           `json:"copies"`
	Took    time.Duration `json:"claim_ns"`
	Balance simBalance    `json:"balance_after"`
}

// simReport is what ringkv ring simulate prints.
type simReport struct {
	Config simConfig `json:"config"`
	// Build is the claim's time summed over the joins that built the ring;
	// MedianJoin and SlowestJoin are over those joins.
	Build        time.Duration `json:"build_ns"`
	MedianJoin   time.Duration `json:"median_join_ns"`
	SlowestJoin  time.Duration `json:"slowest_join_ns"`
	Balance      simBalance    `json:"balance"`
	Join         simChange     `json:"join"`
	Leave        simChange     `json:"leave"`
	WithinBounds bool          `json:"within_bounds"`
}

// simulate builds a ring of c.Members members one join at a time, then
// measures the join of one more member and, on the ring of c.Members, the
// leave of one of them (drawn from c.Seed).
func simulate(c simConfig) (simReport, error) {
	if c.Members < 1 || c.Members > simMaxMembers {
		return simReport{}, fmt.Errorf("%w: --members %d is not in [1, %d]", errUsage, c.Members, simMaxMembers)
	}
	if c.Zones < 0 {
		return simReport{}, fmt.Errorf("%w: --zones %d is negative", errUsage, c.Zones)
	}
	// ring.New would take a zero for its default.
	cfg := ring.Config{Partitions: c.Partitions, ReplicationFactor: c.RF}
	if err := cfg.Validate(); err != nil {
		return simReport{}, fmt.Errorf("%w: %w", errUsage, err)
	}
	r, err := ring.New(cfg)
	if err != nil {
		return simReport{}, fmt.Errorf("%w: %w", errUsage, err)
	}
	rng := rand.New(rand.NewPCG(c.Seed, uint64(c.Members)))
	members := make([]ring.Member, c.Members+1)
	for i := range members {
		members[i].ID = fmt.Sprintf("m%04d", i)
		if c.Zones > 0 {
			members[i].Zone = fmt.Sprintf("z%d", rng.IntN(c.Zones))
		}
	}
	joiner := members[c.Members]
	members = members[:c.Members]
	rng.Shuffle(len(members), func(i, j int) { members[i], members[j] = members[j], members[i] })

	rep := simReport{Config: c}
	joins := make([]time.Duration, 0, len(members))
	for _, m := range members {
		start := time.Now()
		if r, err = r.Join(m); err != nil {
			return simReport{}, fmt.Errorf("join %s: %w", m.ID, err)
		}
		joins = append(joins, time.Since(start))
		rep.Build += joins[len(joins)-1]
	}
	slices.Sort(joins)
	rep.MedianJoin, rep.SlowestJoin = joins[len(joins)/2], joins[len(joins)-1]
	rep.Balance = newSimBalance(r)

	start := time.Now()
	joined, err := r.Join(joiner)
	if err != nil {
		return simReport{}, fmt.Errorf("join %s: %w", joiner.ID, err)
	}
	took, mv := time.Since(start), ring.Moved(r, joined)
	rep.Join = measureChange(mv, joined, joiner.ID, took, r.JoinOptimum())
	rep.Join.Others = mv.Slots - mv.CopiesTo[joiner.ID]

	leaver := r.Active()[rng.IntN(c.Members)].ID
	start = time.Now()
	left, err := r.Leave(leaver)
	if err != nil {
		return simReport{}, fmt.Errorf("leave %s: %w", leaver, err)
	}
	took, mv = time.Since(start), ring.Moved(r, left)
	held := len(r.PartitionsOf(leaver))
	rep.Leave = measureChange(mv, left, leaver, took, held)
	rep.Leave.Others = mv.Slots - held

	rep.WithinBounds = withinBalance(rep.Balance) && withinBalance(rep.Join.Balance) &&
		withinBalance(rep.Leave.Balance) && rep.Join.Ratio <= simMovementBound
	return rep, nil
}

// measureChange reports a transition to ring to that moved mv.
func measureChange(mv ring.Movement, to *ring.Ring, id string, took time.Duration, optimum int) simChange {
	ch := simChange{Member: id, Slots: mv.Slots, Optimum: optimum, Copies: mv.Copies, Took: took, Balance: newSimBalance(to)}
	if optimum > 0 {
		ch.Ratio = float64(mv.Slots) / float64(optimum)
	}
	return ch
}

// withinBalance reports whether every replica count is within 10% of fair
// or within one slot of it.
func withinBalance(b simBalance) bool {
	return b.ReplicaDeviation <= simBalanceBound ||
		(b.FairReplicas-float64(b.MinReplicas) < 1 && float64(b.MaxReplicas)-b.FairReplicas < 1)
}

func (rep simReport) print(w io.Writer) {
	c := rep.Config
	fmt.Fprintf(w, "ring simulate: %d members, P=%d, N=%d, zones %d, seed %d\n", c.Members, c.Partitions, c.RF, c.Zones, c.Seed)
	fmt.Fprintf(w, "build: %d joins, claim time %v (median join %v, slowest %v)\n",
		c.Members, rep.Build.Round(time.Millisecond), rep.MedianJoin.Round(10*time.Microsecond), rep.SlowestJoin.Round(10*time.Microsecond))
	printBalance(w, "at "+fmt.Sprint(c.Members), rep.Balance)
	for _, ch := range []struct {
		what string
		simChange
	}{{"join", rep.Join}, {"leave", rep.Leave}} {
		fmt.Fprintf(w, "%s of %s: %d replica slots moved (%d copies to build), optimum %d, other moves %d, ratio %.3f; claim time %v\n",
			ch.what, ch.Member, ch.Slots, ch.Copies, ch.Optimum, ch.Others, ch.Ratio, ch.Took.Round(10*time.Microsecond))
		printBalance(w, "after the "+ch.what, ch.Balance)
	}
	verdict := "within bounds"
	if !rep.WithinBounds {
		verdict = "OUTSIDE bounds"
	}
	fmt.Fprintf(w, "%s: balance within %.0f%% of fair (or one slot), join movement at most %.1fx the optimum\n",
		verdict, 100*simBalanceBound, simMovementBound)
}

func printBalance(w io.Writer, when string, b simBalance) {
	fmt.Fprintf(w, "  balance %s: replicas per member %d..%d, fair %.2f, worst deviation %.1f%%; primaries %d..%d, fair %.2f, worst deviation %.1f%%\n",
		when, b.MinReplicas, b.MaxReplicas, b.FairReplicas, 100*b.ReplicaDeviation,
		b.MinPrimaries, b.MaxPrimaries, b.FairPrimaries, 100*b.PrimaryDeviation)
}
