// Command tracewakes counts goroutine wake-ups in a Go execution trace
// (a node's /debug/pprof/trace), by where each woken goroutine had
// blocked: which timers and channels keep an idle process busy
// (docs/BENCHMARKS.md, "Idle cost"). Its own module, so that the main
// module does not depend on golang.org/x/exp.
//
//	curl -so trace.out 'http://127.0.0.1:26061/debug/pprof/trace?seconds=10'
//	go run . trace.out
package main

import (
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"golang.org/x/exp/trace"
)

func main() {
	f, err := os.Open(os.Args[1])
	if err != nil {
		panic(err)
	}
	r, err := trace.NewReader(f)
	if err != nil {
		panic(err)
	}
	wakes := map[string]int{}
	blockedAt := map[trace.GoID]trace.Stack{}
	pending := map[trace.GoID]int{}
	frameKey := func(stk trace.Stack) string {
		var frames []string
		for fr := range stk.Frames() {
			fn := fr.Func
			if i := strings.LastIndex(fn, "/"); i >= 0 {
				fn = fn[i+1:]
			}
			frames = append(frames, fn)
		}
		k := 0
		for k < len(frames)-1 && (strings.HasPrefix(frames[k], "runtime.") || strings.HasPrefix(frames[k], "time.") || strings.HasPrefix(frames[k], "sync.") || strings.HasPrefix(frames[k], "internal/")) {
			k++
		}
		return strings.Join(frames[k:min(k+3, len(frames))], " < ")
	}
	total := 0
	var first, last trace.Time
	for {
		ev, err := r.ReadEvent()
		if err == io.EOF {
			break
		}
		if err != nil {
			panic(err)
		}
		if first == 0 {
			first = ev.Time()
		}
		last = ev.Time()
		if ev.Kind() != trace.EventStateTransition {
			continue
		}
		st := ev.StateTransition()
		if st.Resource.Kind != trace.ResourceGoroutine {
			continue
		}
		from, to := st.Goroutine()
		if to == trace.GoWaiting || (to == trace.GoRunnable && from == trace.GoNotExist) {
			if st.Stack != trace.NoStack {
				blockedAt[st.Resource.Goroutine()] = st.Stack
			}
			continue
		}
		if !(from == trace.GoWaiting && to == trace.GoRunnable) {
			continue
		}
		stk := blockedAt[st.Resource.Goroutine()]
		if stk == trace.NoStack {
			pending[st.Resource.Goroutine()]++
			total++
			continue
		}
		key := frameKey(stk)
		if key == "" {
			key = "(no stack)"
		}
		wakes[key]++
		total++
	}
	for g, n := range pending {
		k := "(nostack) " + frameKey(blockedAt[g])
		wakes[k] += n
	}
	secs := float64(last-first) / 1e9
	type kv struct {
		k string
		n int
	}
	var l []kv
	for k, n := range wakes {
		l = append(l, kv{k, n})
	}
	sort.Slice(l, func(i, j int) bool { return l[i].n > l[j].n })
	fmt.Printf("%.1fs, %d wakes, %.0f/s\n", secs, total, float64(total)/secs)
	for i, e := range l {
		if i >= 40 {
			break
		}
		fmt.Printf("%7.1f/s  %s\n", float64(e.n)/secs, e.k)
	}
}
