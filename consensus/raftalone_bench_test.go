package consensus

import (
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// BenchmarkRaftAlone measures hashicorp/raft by itself: groups of three
// members in one process over raft's in-memory transport and store, a
// FSM that does nothing, the raft settings a node uses, 32 callers each
// applying 140-byte commands to the leader of a random group. It reports
// the process's CPU per write (us-cpu/op): the floor the library sets
// under a linearizable write of ringkv before any of ringkv's own work (no
// encoding, system call, fsync or store). Run with
//
//	go test -run '^$' -bench BenchmarkRaftAlone -benchtime 200000x ./consensus/
func BenchmarkRaftAlone(b *testing.B) {
	for _, groups := range []int{1, 8, 64} {
		b.Run(fmt.Sprintf("groups=%d", groups), func(b *testing.B) {
			leaders := startAloneGroups(b, groups)
			data := make([]byte, 140)
			var (
				next atomic.Int64
				wg   sync.WaitGroup
			)
			b.ResetTimer()
			c0, t0 := trRusage(b), time.Now()
			for range 32 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for next.Add(1) <= int64(b.N) {
						if err := leaders[rand.IntN(groups)].Apply(data, 0).Error(); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			cpu, el := trRusage(b)-c0, time.Since(t0)
			b.StopTimer()
			b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "us-cpu/op")
			b.ReportMetric(cpu.Seconds()/el.Seconds(), "cores")
		})
	}
}

// startAloneGroups starts groups raft groups of three members each and
// returns each group's leader; they are shut down when b ends.
func startAloneGroups(b *testing.B, groups int) []*raft.Raft {
	b.Helper()
	def := DefaultConfig()
	leaders := make([]*raft.Raft, groups)
	members := make([][3]*raft.Raft, groups)
	for g := range leaders {
		var (
			trans [3]*raft.InmemTransport
			addrs [3]raft.ServerAddress
			cfg   raft.Configuration
			rs    [3]*raft.Raft
		)
		for i := range trans {
			addrs[i], trans[i] = raft.NewInmemTransport("")
			cfg.Servers = append(cfg.Servers, raft.Server{ID: raft.ServerID(fmt.Sprint(i)), Address: addrs[i]})
		}
		for i := range trans {
			for j := range trans {
				if i != j {
					trans[i].Connect(addrs[j], trans[j])
				}
			}
		}
		for i := range trans {
			rc := raft.DefaultConfig()
			rc.LocalID = raft.ServerID(fmt.Sprint(i))
			rc.HeartbeatTimeout, rc.ElectionTimeout = def.HeartbeatTimeout, def.ElectionTimeout
			rc.LeaderLeaseTimeout, rc.CommitTimeout = def.LeaderLeaseTimeout, def.CommitTimeout
			rc.SnapshotThreshold, rc.TrailingLogs = def.SnapshotThreshold, def.TrailingLogs
			rc.BatchApplyCh = true
			rc.Logger = hclog.NewNullLogger()
			store, snaps := raft.NewInmemStore(), raft.NewInmemSnapshotStore()
			if err := raft.BootstrapCluster(rc, store, store, snaps, trans[i], cfg); err != nil {
				b.Fatal(err)
			}
			r, err := raft.NewRaft(rc, aloneFSM{}, store, store, snaps, trans[i])
			if err != nil {
				b.Fatal(err)
			}
			rs[i] = r
			b.Cleanup(func() { _ = r.Shutdown().Error() })
		}
		members[g] = rs
	}
	// Elections run concurrently; poll for every group's leader.
	waitFor(b, 60*time.Second, "a leader in every group", func() error {
		for g, rs := range members {
			for _, r := range rs {
				if r.State() == raft.Leader {
					leaders[g] = r
				}
			}
			if leaders[g] == nil {
				return fmt.Errorf("group %d has none", g)
			}
		}
		return nil
	})
	return leaders
}

// aloneFSM applies nothing.
type aloneFSM struct{}

func (aloneFSM) Apply(*raft.Log) any                 { return nil }
func (aloneFSM) ApplyBatch(l []*raft.Log) []any      { return make([]any, len(l)) }
func (aloneFSM) Snapshot() (raft.FSMSnapshot, error) { return aloneSnapshot{}, nil }
func (aloneFSM) Restore(rc io.ReadCloser) error      { return rc.Close() }

type aloneSnapshot struct{}

func (aloneSnapshot) Persist(s raft.SnapshotSink) error { return s.Close() }
func (aloneSnapshot) Release()                          {}
