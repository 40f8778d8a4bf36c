package consensus

import (
	"context"
	"errors"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkSinglePartition compares a compare-and-set with transactions
// of one and four keys on a 3-replica in-memory group (the bar:
// single-partition transactions at least as fast as CAS). Each of 16
// concurrent callers per core owns its keys, so nothing conflicts.
//
//	go test -run '^$' -bench SinglePartition -benchtime 3s ./consensus
func BenchmarkSinglePartition(b *testing.B) {
	c, mgrs := newCluster(b, 2)
	const p, perCaller, parallelism = 1, 4, 16
	// One key set per caller: RunParallel starts parallelism x GOMAXPROCS.
	keys := txnKeys(c, p, parallelism*runtime.GOMAXPROCS(0)*perCaller)
	ctx := context.Background()
	for _, bc := range []struct {
		name string
		op   func(ctx context.Context, g *Group, ks [][]byte, n int) error
	}{
		{"cas", func(ctx context.Context, g *Group, ks [][]byte, n int) error {
			var expected *[]byte
			if n > 0 {
				e := []byte(strconv.Itoa(n - 1))
				expected = &e
			}
			ok, _, _, err := g.CompareAndSet(ctx, ks[0], expected, []byte(strconv.Itoa(n)), time.Time{})
			if err == nil && !ok {
				b.Errorf("cas %d missed", n)
			}
			return err
		}},
		{"txn-1-key", func(ctx context.Context, g *Group, ks [][]byte, n int) error {
			t := &Txn{Success: []Op{{Kind: OpSet, Key: ks[0], Value: []byte(strconv.Itoa(n))}}}
			if n > 0 {
				t.Compares = []Compare{{Kind: CompareValue, Key: ks[0], Value: []byte(strconv.Itoa(n - 1))}}
			}
			res, err := g.Txn(ctx, t)
			if err == nil && !res.Succeeded {
				b.Errorf("txn %d failed its compare", n)
			}
			return err
		}},
		{"txn-4-keys", func(ctx context.Context, g *Group, ks [][]byte, n int) error {
			t := &Txn{}
			if n > 0 {
				t.Compares = []Compare{{Kind: CompareValue, Key: ks[0], Value: []byte(strconv.Itoa(n - 1))}}
			}
			for _, k := range ks {
				t.Success = append(t.Success, Op{Kind: OpSet, Key: k, Value: []byte(strconv.Itoa(n))})
			}
			res, err := g.Txn(ctx, t)
			if err == nil && !res.Succeeded {
				b.Errorf("txn %d failed its compare", n)
			}
			return err
		}},
		{"txn-4-gets", func(ctx context.Context, g *Group, ks [][]byte, _ int) error {
			t := &Txn{}
			for _, k := range ks {
				t.Success = append(t.Success, Op{Kind: OpGet, Key: k})
			}
			_, err := g.Txn(ctx, t)
			return err
		}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetParallelism(parallelism)
			var next, ambiguous atomic.Int64
			defer func() { b.ReportMetric(float64(ambiguous.Load()), "ambiguous") }()
			b.RunParallel(func(pb *testing.PB) {
				i := int(next.Add(1) - 1)
				ks := keys[i*perCaller : (i+1)*perCaller]
				// sync starts n from what the key holds now.
				n := 0
				sync := func() {
					_ = onLeaderOf(ctx, mgrs, p, func(g *Group) error {
						rec, err := g.Get(ctx, ks[0])
						if err == nil && rec.Live(g.Now()) {
							v, _ := strconv.Atoi(string(rec.Value))
							n = v + 1
						}
						return err
					})
				}
				sync()
				for pb.Next() {
					err := onLeaderOf(ctx, mgrs, p, func(g *Group) error { return bc.op(ctx, g, ks, n) })
					switch {
					case err == nil:
						n++
					case errors.Is(err, ErrAmbiguous):
						// A leader overloaded past its lease (this machine is
						// small and shared): the write may have applied.
						ambiguous.Add(1)
						sync()
					default:
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
