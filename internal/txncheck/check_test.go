package txncheck

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

var t0 = time.Unix(1_800_000_000, 0)

func at(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }

func r(key string, list ...int) Mop {
	if list == nil {
		list = []int{}
	}
	return Mop{Key: key, Read: list}
}

func ap(key string, v int) Mop { return Mop{Key: key, Append: true, Value: v} }

// txn is an OK transaction over [inv, done] ms.
func txn(inv, done int, mops ...Mop) Txn {
	return Txn{Invoke: at(inv), Complete: at(done), Outcome: OK, Mops: mops}
}

func kinds(res Result) string {
	var out []string
	for _, a := range res.Anomalies {
		out = append(out, a.Kind)
	}
	return strings.Join(out, ",")
}

func TestAnomalies(t *testing.T) {
	fail := txn(0, 1, ap("x", 1))
	fail.Outcome = Fail
	unknownSeen := Txn{Invoke: at(0), Outcome: Unknown, Mops: []Mop{ap("x", 1)}}
	unknownUnseen := Txn{Invoke: at(0), Outcome: Unknown, Mops: []Mop{ap("x", 9)}}
	for _, tc := range []struct {
		name string
		h    []Txn
		want string // anomaly kinds, in order; "" valid
	}{
		{"serial appends and reads", []Txn{
			txn(0, 1, ap("x", 1)),
			txn(2, 3, r("x", 1), ap("x", 2)),
			txn(4, 5, r("x", 1, 2), r("y")),
		}, ""},
		{"concurrent, either order", []Txn{
			txn(0, 10, ap("x", 1)),
			txn(0, 10, r("x")),
			txn(11, 12, r("x", 1)),
		}, ""},
		{"G0 write cycle", []Txn{
			txn(0, 10, ap("x", 1), ap("y", 1)),
			txn(0, 10, ap("x", 2), ap("y", 2)),
			txn(20, 30, r("x", 1, 2), r("y", 2, 1)),
		}, "G0"},
		{"G1a aborted read", []Txn{
			fail,
			txn(2, 3, r("x", 1)),
		}, "G1a"},
		{"G1c circular information flow", []Txn{
			txn(0, 10, ap("x", 1), r("y", 1)),
			txn(0, 10, ap("y", 1), r("x", 1)),
		}, "G1c"},
		{"G-single read skew", []Txn{
			txn(0, 10, ap("x", 1), ap("y", 1)),
			txn(0, 10, r("x"), r("y", 1)),
			txn(0, 10, r("x", 1)),
		}, "G-single"},
		{"G2 write skew", []Txn{
			txn(0, 10, r("x"), ap("y", 1)),
			txn(0, 10, r("y"), ap("x", 1)),
			txn(20, 30, r("x", 1), r("y", 1)),
		}, "G2"},
		{"stale read in real time", []Txn{
			txn(0, 1, ap("x", 1)),
			txn(2, 3, r("x")),
			txn(4, 5, r("x", 1)),
		}, "G-single-realtime"},
		{"writes against real time", []Txn{
			txn(0, 1, ap("x", 2)),
			txn(2, 3, ap("x", 1)),
			txn(4, 5, r("x", 1, 2)),
		}, "G0-realtime"},
		{"an unknown append that was read took effect", []Txn{
			unknownSeen,
			txn(50, 60, r("x", 1)),
			txn(61, 62, r("x")),
		}, "G-single-realtime"},
		{"an unknown append never read is left out", []Txn{
			unknownUnseen,
			txn(50, 60, r("x")),
		}, ""},
		{"incompatible orders", []Txn{
			txn(0, 1, ap("x", 1)),
			txn(0, 1, ap("x", 2)),
			txn(2, 3, r("x", 1, 2)),
			txn(2, 3, r("x", 2)),
		}, "incompatible-order,G-single-realtime"},
		{"an element appended twice", []Txn{
			txn(0, 1, ap("x", 1)),
			txn(0, 1, ap("x", 1)),
		}, "duplicate-append"},
		{"garbage", []Txn{
			txn(2, 3, r("x", 7)),
		}, "garbage-read"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := Check(tc.h)
			if got := kinds(res); got != tc.want {
				t.Fatalf("got %q, want %q\n%s", got, tc.want, res)
			}
			if res.Valid() != (tc.want == "") {
				t.Fatalf("Valid() = %v", res.Valid())
			}
			_ = res.String()
		})
	}
}

// serialHistory runs n random transactions one after another on a
// model, each given an interval that overlaps its neighbours' but
// contains its own instant in the serial order, so that the history is
// strictly serializable by construction.
func serialHistory(rng *rand.Rand, n, keys int) []Txn {
	state := map[string][]int{}
	next := 0
	var h []Txn
	for i := range n {
		var mops []Mop
		for range 1 + rng.IntN(4) {
			k := fmt.Sprintf("k%d", rng.IntN(keys))
			if rng.IntN(2) == 0 {
				mops = append(mops, Mop{Key: k, Read: append([]int{}, state[k]...)})
			} else {
				next++
				state[k] = append(state[k], next)
				mops = append(mops, ap(k, next))
			}
		}
		// Instant i*10; the interval reaches up to 25 ms either side.
		inv := i*10 - rng.IntN(25)
		done := i*10 + rng.IntN(25)
		h = append(h, Txn{Invoke: at(inv), Complete: at(done), Outcome: OK, Mops: mops, Label: fmt.Sprint(i)})
	}
	return h
}

func TestSerialHistoriesPass(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for range 20 {
		h := serialHistory(rng, 400, 6)
		if res := Check(h); !res.Valid() {
			t.Fatalf("a serial history failed: %s", res)
		}
	}
}

// TestBrokenHistoriesFail takes serial histories and breaks them as a
// faulty store would: a read that misses the latest append (a stale
// read), or a transaction whose read and append were not atomic (a lost
// update: another append slipped in between). Every break must be found.
func TestBrokenHistoriesFail(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	found := 0
	for trial := range 50 {
		h := serialHistory(rng, 200, 4)
		// Find a read of a non-empty list, late enough that later
		// transactions depend on it, drop its last element, and make the
		// read begin after that element's writer completed: a stale read
		// in real time, which no serial order explains.
		broken := false
		writer := map[int]int{}
		for i, tx := range h {
			for _, m := range tx.Mops {
				if m.Append {
					writer[m.Value] = i
				}
			}
		}
		for i := len(h) / 2; i < len(h) && !broken; i++ {
			for j, m := range h[i].Mops {
				if !m.Append && len(m.Read) > 0 && writer[m.Read[len(m.Read)-1]] != i {
					w := writer[m.Read[len(m.Read)-1]]
					h[i].Mops[j].Read = append([]int{}, m.Read[:len(m.Read)-1]...)
					if inv := h[w].Complete.Add(time.Millisecond); h[i].Invoke.Before(inv) {
						h[i].Invoke = inv
					}
					if h[i].Complete.Before(h[i].Invoke) {
						h[i].Complete = h[i].Invoke
					}
					broken = true
					break
				}
			}
		}
		if !broken {
			continue
		}
		res := Check(h)
		if !res.Valid() {
			found++
			continue
		}
		t.Logf("trial %d: a stale read went unseen: %s", trial, res)
	}
	if found < 50 {
		t.Fatalf("only %d of 50 broken histories failed", found)
	}
}

func BenchmarkCheck(b *testing.B) {
	h := serialHistory(rand.New(rand.NewPCG(5, 6)), 20_000, 64)
	b.ResetTimer()
	for range b.N {
		if res := Check(h); !res.Valid() {
			b.Fatal(res)
		}
	}
}
