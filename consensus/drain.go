package consensus

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/raft"
)

// Draining
//
// A node that drains hands leadership of every group it leads to another
// voter, and keeps doing so while it drains: a group whose leader fails
// may elect it again, and the next reconcile tick hands it on. While
// draining it changes no configuration (the new leader does). Every leader
// also avoids handing leadership to a member that drains (Deps.Drains):
// the transfer to a partition's primary waits until the primary is done.

// DrainSource tells which members drain. The node adapts gossip to it.
type DrainSource interface {
	Draining(nodeID string) bool
}

// SetDraining starts (true) or ends a drain of this node's groups; while
// draining, the reconcile loop hands leadership of the groups this node
// leads to other voters instead of reconfiguring them. Safe for
// concurrent use.
func (mg *Manager) SetDraining(on bool) { mg.draining.Store(on) }

// Draining reports whether SetDraining(true) is in effect.
func (mg *Manager) Draining() bool { return mg.draining.Load() }

// Leading returns the ids of the groups this node leads, in order.
func (mg *Manager) Leading() []uint32 {
	var out []uint32
	for _, g := range mg.Groups() {
		if g.raft.State() == raft.Leader {
			out = append(out, g.id)
		}
	}
	return out
}

// HandOff transfers leadership of every group this node leads to another
// voter, round after round, until it leads none. It returns nil then; an
// error wrapping ErrNoVoter, at once, when every group it still leads has
// no other voter that answers (there is nobody to hand them to); or, when
// ctx ends first, an error wrapping ctx's error that names the groups it
// still leads. Call SetDraining(true) first, so that the loop does not
// take leadership back (a primary that does not drain is handed
// leadership by its group's leader).
func (mg *Manager) HandOff(ctx context.Context) error {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		led := mg.Leading()
		if len(led) == 0 {
			return nil
		}
		var stuck []uint32
		for _, id := range led {
			g, ok := mg.Group(id)
			if !ok {
				continue
			}
			err := mg.handOff(ctx, g)
			if errors.Is(err, ErrNoVoter) {
				stuck = append(stuck, id)
			} else if err != nil {
				mg.log.Debug("leadership hand-off", "group_id", id, "err", err)
			}
		}
		if len(stuck) == len(led) {
			return fmt.Errorf("consensus: groups %v: %w", stuck, ErrNoVoter)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("consensus: still leading groups %v: %w", mg.Leading(), ctx.Err())
		case <-tick.C:
		}
	}
}

// handOff transfers g's leadership to its best other voter: the furthest
// applied among those that answer, preferring those that do not drain. It
// returns once raft reports the transfer done, or ErrNoVoter when no other
// voter answers.
func (mg *Manager) handOff(ctx context.Context, g *Group) error {
	if g.raft.State() != raft.Leader {
		return nil
	}
	cf := g.raft.GetConfiguration()
	if err := cf.Error(); err != nil {
		return fmt.Errorf("get configuration: %w", err)
	}
	var best raft.ServerID
	var bestApplied uint64
	bestDrains := true
	for _, s := range cf.Configuration().Servers {
		if s.Suffrage != raft.Voter || string(s.ID) == mg.cfg.NodeID {
			continue
		}
		drains := mg.deps.Drains != nil && mg.deps.Drains.Draining(string(s.ID))
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		applied, err := mg.deps.Progress.AppliedIndex(cctx, string(s.ID), g.id)
		cancel()
		if err != nil {
			continue
		}
		if best == "" || (bestDrains && !drains) || (drains == bestDrains && applied > bestApplied) {
			best, bestApplied, bestDrains = s.ID, applied, drains
		}
	}
	if best == "" {
		return ErrNoVoter
	}
	mg.log.Debug("handing leadership over while draining", "group_id", g.id, "peer", best)
	err := g.transferLeadership(best)
	if err == nil {
		mg.m.drainTransfers.Inc()
	}
	return err
}
