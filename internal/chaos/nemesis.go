package chaos

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"
)

// FaultKind is one kind of fault the nemesis injects.
type FaultKind int

// The fault kinds.
const (
	// FaultIsolate cuts one random member from all others.
	FaultIsolate FaultKind = iota
	// FaultIsolateLeader cuts the member leading the most raft groups.
	FaultIsolateLeader
	// FaultSplit cuts a random minority from the majority.
	FaultSplit
	// FaultBridge cuts two halves apart, one bridge node seeing both.
	FaultBridge
	// FaultRing cuts links so each node sees a different majority.
	FaultRing
	// FaultSlow delays every link of one member by 50-200ms.
	FaultSlow
	// FaultPause freezes one member's process (SIGSTOP, then SIGCONT).
	FaultPause
	// FaultKill kills one member (SIGKILL) and restarts it.
	FaultKill
	// FaultSkewSmall shifts one member's clock within the HLC's maximum
	// offset (500ms).
	FaultSkewSmall
	// FaultSkewLarge shifts one member's clock by 1.5-4s, beyond it.
	FaultSkewLarge
	// FaultJoin starts a spare node and waits until it joined.
	FaultJoin
	// FaultLeave makes a joined spare leave, removes it and stops it.
	FaultLeave
	// FaultPartitionSplit doubles the ring's partitions (ringkv cluster
	// split) and waits until every group of the new ring converged. Not
	// in AllFaults: each one doubles the groups for the rest of the run.
	FaultPartitionSplit
	// numProxyFaults ends the kinds of a cluster on loopback (AllFaults);
	// the host kinds below need ClusterConfig.Hosts (HostFaults).
	numProxyFaults
)

// The host-level kinds (ClusterConfig.Hosts): faults of a whole host.
const (
	// FaultHostLink cuts one member's host off the switch (its cable),
	// then restores it.
	FaultHostLink FaultKind = numProxyFaults + iota
	// FaultHostFreeze stops every process of one member's host
	// (SIGSTOP), then continues them.
	FaultHostFreeze
	// FaultHostRestart kills one member's host's process (SIGKILL), and
	// when the fault heals starts it again on its data directory.
	FaultHostRestart
	numFaultKinds
)

var faultNames = [...]string{"isolate", "isolate-leader", "split", "bridge", "majorities-ring", "slow", "pause", "kill", "skew-small", "skew-large", "join", "leave", "partition-split",
	"host-link", "host-freeze", "host-restart"}

// String names the kind.
func (k FaultKind) String() string {
	if k >= 0 && k < numFaultKinds {
		return faultNames[k]
	}
	return fmt.Sprintf("FaultKind(%d)", int(k))
}

// AllFaults lists every kind of a cluster on loopback, join before
// leave, but FaultPartitionSplit (which a run asks for by name).
func AllFaults() []FaultKind {
	var out []FaultKind
	for k := range FaultKind(numProxyFaults) {
		if k != FaultPartitionSplit {
			out = append(out, k)
		}
	}
	return out
}

// HostFaults lists the host-level kinds (ClusterConfig.Hosts).
func HostFaults() []FaultKind {
	return []FaultKind{FaultHostLink, FaultHostFreeze, FaultHostRestart}
}

// Nemesis injects faults into a Cluster, one at a time, drawn from rng.
type Nemesis struct {
	c   *Cluster
	rng *rand.Rand

	joined []string // spares that joined and have not left
}

// Fault is an injected fault: Heal undoes it (nil: nothing to undo).
type Fault struct {
	Kind FaultKind
	Desc string
	Heal func(ctx context.Context) error
}

// Inject starts a fault of kind. A kind that cannot run now (leave with
// no joined spare, join with no spare left) returns ok false.
func (nm *Nemesis) Inject(ctx context.Context, kind FaultKind) (f Fault, ok bool, err error) {
	members := nm.c.Members()
	pick := func() string { return members[nm.rng.IntN(len(members))] }
	mode := Blackhole
	if nm.rng.IntN(3) == 0 {
		mode = Drop
	}
	f.Kind = kind
	healNet := func(context.Context) error { nm.c.Net.Heal(); return nil }
	hostKind := kind >= numProxyFaults
	if hostKind != (nm.c.Net == nil) {
		return f, false, fmt.Errorf("chaos: fault %v needs a cluster %s", kind, map[bool]string{true: "on hosts (ClusterConfig.Hosts)", false: "on loopback with proxies"}[hostKind])
	}
	switch kind {
	case FaultHostLink:
		nd := nm.c.Node(pick())
		if err := nd.Host().LinkDown(); err != nil {
			return f, false, err
		}
		f.Desc = fmt.Sprintf("link of %s (%s) cut", nd.ID, nd.Host().IP)
		f.Heal = func(context.Context) error { return nd.Host().LinkUp() }
	case FaultHostFreeze:
		nd := nm.c.Node(pick())
		if err := nd.Host().Freeze(); err != nil {
			return f, false, err
		}
		f.Desc = fmt.Sprintf("host of %s (%s) frozen", nd.ID, nd.Host().IP)
		f.Heal = func(context.Context) error { return nd.Host().Thaw() }
	case FaultHostRestart:
		nd := nm.c.Node(pick())
		nd.Kill()
		f.Desc = fmt.Sprintf("host of %s (%s) down for a restart", nd.ID, nd.Host().IP)
		f.Heal = func(context.Context) error { nd.Start(); return nil }
	case FaultIsolate:
		nm.c.Net.Isolate(mode, pick())
		f.Heal = healNet
	case FaultIsolateLeader:
		leaders := nm.c.LeadersOf(ctx)
		id, most := pick(), 0
		for _, m := range members {
			if leaders[m] > most {
				id, most = m, leaders[m]
			}
		}
		nm.c.Net.Isolate(mode, id)
		f.Heal = healNet
	case FaultSplit:
		nm.c.Net.Split(nm.rng, mode, members)
		f.Heal = healNet
	case FaultBridge:
		if err := nm.c.Net.Bridge(nm.rng, mode, members); err != nil {
			return f, false, nil //nolint:nilerr // too few nodes: skip
		}
		f.Heal = healNet
	case FaultRing:
		nm.c.Net.MajoritiesRing(nm.rng, mode, members)
		f.Heal = healNet
	case FaultSlow:
		nm.c.Net.Slow(pick(), time.Duration(50+nm.rng.IntN(150))*time.Millisecond)
		f.Heal = healNet
	case FaultPause:
		nd := nm.c.Node(pick())
		nd.Pause()
		f.Desc = "pause " + nd.ID
		f.Heal = func(context.Context) error { nd.Resume(); return nil }
	case FaultKill:
		nd := nm.c.Node(pick())
		nd.Kill()
		f.Desc = "kill " + nd.ID
		f.Heal = func(context.Context) error { nd.Start(); return nil }
	case FaultSkewSmall, FaultSkewLarge:
		id := pick()
		d := time.Duration(100+nm.rng.IntN(300)) * time.Millisecond
		if kind == FaultSkewLarge {
			d = time.Duration(1500+nm.rng.IntN(2500)) * time.Millisecond
		}
		if nm.rng.IntN(2) == 0 {
			d = -d
		}
		if err := nm.c.SetClockOffset(ctx, id, d); err != nil {
			return f, false, err
		}
		f.Desc = fmt.Sprintf("clock of %s %+v", id, d)
		f.Heal = func(ctx context.Context) error { return nm.c.SetClockOffset(ctx, id, 0) }
	case FaultJoin:
		id, err := nm.c.Join(ctx, 90*time.Second)
		if id == "" {
			return f, false, nil // no spare left
		}
		if err != nil {
			return f, true, err
		}
		nm.joined = append(nm.joined, id)
		f.Desc = "join " + id
	case FaultPartitionSplit:
		p, err := nm.c.SplitPartitions(ctx, 90*time.Second)
		if errors.Is(err, errSplitBound) {
			return f, false, nil // the ring is at ClusterConfig.MaxPartitions
		}
		if err != nil {
			return f, true, err
		}
		f.Desc = fmt.Sprintf("split to %d partitions", p)
	case FaultLeave:
		if len(nm.joined) == 0 {
			return f, false, nil
		}
		id := nm.joined[0]
		nm.joined = nm.joined[1:]
		f.Desc = "leave " + id
		if err := nm.c.Leave(ctx, id, 90*time.Second); err != nil {
			return f, true, err
		}
	default:
		return f, false, fmt.Errorf("chaos: unknown fault %v", kind)
	}
	if f.Desc == "" {
		f.Desc = nm.c.Net.State()
	}
	return f, true, nil
}

// HealAll undoes every fault there may be: the network heals, paused
// processes continue, stopped members restart, clocks lose their skew.
func (c *Cluster) HealAll(ctx context.Context) error {
	var errs []error
	if c.Net != nil {
		c.Net.Heal()
	}
	for _, id := range c.Members() {
		nd := c.Node(id)
		if h := nd.Host(); h != nil {
			errs = append(errs, h.LinkUp(), h.Thaw())
		}
		nd.Resume()
		if !nd.Running() {
			nd.Start()
		}
	}
	for id := range c.Skewed() {
		errs = append(errs, c.SetClockOffset(ctx, id, 0))
	}
	return errors.Join(errs...)
}
