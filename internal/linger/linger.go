// Package linger is the group-commit pause of the node's two syncers, the
// replica store's (Badger) and the Raft WAL's: under load, before an
// fsync that would cover few writes, wait a little for more, so that one
// fsync covers them all. Each fsync costs CPU as well as time (about
// 0.1 ms of a node's CPU on the machines measured), so fewer, larger
// fsyncs leave more CPU to the writes; the writes that wait pay at most an
// fsync's time.
//
// A Policy belongs to one syncer goroutine and is not safe for concurrent
// use.
package linger

import "time"

// Policy decides whether and how long a syncer lingers. The zero value
// never lingers.
type Policy struct {
	// Max is the longest a linger lasts; <= 0: never linger.
	Max time.Duration
	// Below: a batch that holds at least Below writes is synced at once.
	Below int
	// Gap, if positive, replaces the quiet gap (a quarter of the linger)
	// that ends a linger early, and lets a linger last the whole Max
	// however fast the syncs are (tests).
	Gap time.Duration

	avg  time.Duration // moving average of the syncs' durations; 0: none yet
	last int           // requests the previous sync answered
}

// Limit is how long a linger may last: Max, but no longer than the syncs
// take on average. Lingering buys fewer fsyncs at the price of the
// lingering writes' latency; once it waits longer than an fsync takes,
// the writes pay more than the fsync it saves them (PostgreSQL's
// commit_delay advice is half an fsync), and writes that arrive during an
// fsync are batched into the next one anyway. On a disk whose fsync takes
// 0.2 ms this keeps the linger near 0.2 ms instead of a 4 ms Max; on one
// whose fsync takes several milliseconds, Max stands.
func (p *Policy) Limit() time.Duration {
	if p.Gap > 0 || p.avg <= 0 {
		return p.Max
	}
	return min(p.Max, p.avg)
}

// Batched records that the sync about to run answers requests requests:
// the next batch lingers even alone if there were more than one.
func (p *Policy) Batched(requests int) { p.last = requests }

// Synced folds a sync's duration into the moving average Limit uses.
func (p *Policy) Synced(took time.Duration) { p.avg = MovingAvg(p.avg, took) }

// Average is the moving average of the syncs' durations (0: none yet).
func (p *Policy) Average() time.Duration { return p.avg }

// MovingAvg folds took into avg (0: none yet), an exponential moving
// average over about the last eight.
func MovingAvg(avg, took time.Duration) time.Duration {
	if avg <= 0 {
		return took
	}
	return avg + (took-avg)/8
}

// Take adds what is waiting to the syncer's batch: it returns the writes
// and requests it added, and whether the syncer is stopping.
type Take func() (writes, requests int, stop bool)

// Wait lingers before the sync of a batch of writes writes in requests
// requests: while the batch holds fewer than Below writes, it calls take
// whenever wake fires, until none has come for a quarter of the linger
// (Gap) or Limit has passed. It lingers only under load: when the batch
// holds more than one request, or the previous sync answered more than
// one; a lone write on an idle store is synced at once. It returns
// whether take reported the syncer stopping (the batch is still to be
// synced). A wake channel that is closed counts as a wake-up each time;
// take must then report stop.
func (p *Policy) Wait(writes, requests int, wake <-chan struct{}, take Take) (stop bool) {
	loaded := requests > 1 || p.last > 1
	if p.Max <= 0 || writes >= p.Below || !loaded {
		return false
	}
	limit := p.Limit()
	deadline := time.Now().Add(limit)
	gap := limit / 4
	if p.Gap > 0 {
		gap = p.Gap
	}
	t := time.NewTimer(min(gap, limit))
	defer t.Stop()
	for writes < p.Below {
		select {
		case <-wake:
			w, r, stop := take()
			if stop {
				return true
			}
			if r == 0 {
				continue // a wake-up for requests already taken
			}
			writes += w
			wait := min(gap, time.Until(deadline))
			if wait <= 0 {
				return false
			}
			t.Reset(wait)
		case <-t.C:
			return false
		}
	}
	return false
}
