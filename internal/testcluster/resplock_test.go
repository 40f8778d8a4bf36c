package testcluster

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// lockGrant is one acknowledged `SET lock token NX PX 2000`.
type lockGrant struct {
	client    int
	sent, ack time.Time
}

// TestRedisLockFailover: 8 clients through the three nodes take a lock
// with `SET key token NX PX 2000` (and never release it: it expires)
// while each node in turn is stopped and restarted, so the partition's
// Raft leader fails over at least once. On the recorded history, every
// grant is acknowledged no earlier than the previous grant's request was
// sent plus 2,000 ms less the clock-skew bound δ (500 ms, ARCHITECTURE,
// "Expiry"): the lock is never held twice at once.
func TestRedisLockFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	t.Parallel() // waits more than it computes (see doc.go)
	const (
		ttl   = 2000 * time.Millisecond
		delta = 500 * time.Millisecond
	)
	c := StartOptions(t, Options{Nodes: 3, NoRace: true})
	c.WaitRaftReady(60*time.Second, 3)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var (
		mu     sync.Mutex
		grants []lockGrant
		errs   int
		wg     sync.WaitGroup
	)
	for i := range 8 {
		r := redis.NewClient(&redis.Options{Addr: c.Nodes[i%3].RESPAddr, DisableIdentity: true,
			MaxRetries: -1, ReadTimeout: 5 * time.Second, DialTimeout: time.Second})
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer r.Close() //nolint:errcheck // test
			tick := time.NewTimer(0)
			defer tick.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
				sent := time.Now()
				ok, err := r.SetArgs(ctx, "lock", fmt.Sprintf("c%d-%d", i, sent.UnixNano()), redis.SetArgs{Mode: "NX", TTL: ttl}).Result()
				ack := time.Now()
				mu.Lock()
				switch {
				case err == nil && ok == "OK":
					grants = append(grants, lockGrant{client: i, sent: sent, ack: ack})
				case err != nil && !errors.Is(err, redis.Nil):
					errs++
				}
				mu.Unlock()
				tick.Reset(time.Duration(20+rand.IntN(40)) * time.Millisecond) //nolint:gosec // test jitter
			}
		}()
	}
	// Stop and restart each node in turn: whichever leads the lock's
	// partition goes down once.
	wait := func(d time.Duration) {
		tm := time.NewTimer(d)
		defer tm.Stop()
		<-tm.C
	}
	wait(2 * time.Second)
	for _, nd := range c.Nodes {
		nd.Kill()
		wait(2 * time.Second)
		nd.Start()
		c.WaitRaftReady(60*time.Second, 3)
	}
	wait(2 * time.Second)
	cancel()
	wg.Wait()
	sort.Slice(grants, func(i, j int) bool { return grants[i].ack.Before(grants[j].ack) })
	if len(grants) < 5 {
		t.Fatalf("only %d grants (%d errors)", len(grants), errs)
	}
	for k := 1; k < len(grants); k++ {
		prev, g := grants[k-1], grants[k]
		if earliest := prev.sent.Add(ttl - delta); g.ack.Before(earliest) {
			t.Fatalf("grant %d to c%d acknowledged at +%v, before grant %d's (c%d) request + %v - δ (+%v)",
				k, g.client, g.ack.Sub(grants[0].sent), k-1, prev.client, ttl, earliest.Sub(grants[0].sent))
		}
	}
	t.Logf("%d grants, %d errors during failovers; smallest gap between a grant's request and the next grant: %v", len(grants), errs, minGap(grants))
}

func minGap(gs []lockGrant) time.Duration {
	m := time.Duration(1<<63 - 1)
	for k := 1; k < len(gs); k++ {
		m = min(m, gs[k].ack.Sub(gs[k-1].sent))
	}
	return m
}
