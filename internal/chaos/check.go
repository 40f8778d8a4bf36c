package chaos

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/cespare/xxhash/v2"
)

// kvState is the model's state of one key.
type kvState struct {
	Value string
	Found bool
}

// model is a register per key with get, set and compare-and-set.
//
// Partitioning is per key only. Cutting a key's history further, at an
// instant T when no operation is in flight, would be sound only if (1) no
// operation of unknown outcome was called before T, since such an
// operation may linearize anywhere after its call, after T too, so the
// two sides would not be independent; and (2) the state at T were known:
// the operations before T may linearize in several orders ending in
// different states (two concurrent sets), so the part after T would have
// to be checked from each state the part before T can end in (each found
// by checking that part followed by a read of that state), not from one.
// By (1) every cut falls before the key's first unknown write, and what
// follows that write, the part that makes porcupine's search grow, stays
// one piece. A cut would split only the cheap part of a key, so there is
// none: the workload bounds each key's operations and its unknown writes
// instead (WorkloadConfig.MaxOpsPerKey, MaxUnknownPerKey), which bounds
// the search where it grows.
//
// An
// operation whose outcome is unknown "returns" after every other one
// (toPorcupine), so it may linearize anywhere after its call; not taking
// effect at all is the same as taking effect at the very end, where no
// operation observes it. So the model stays deterministic: an unknown CAS
// swaps exactly when the state matches (a nondeterministic "maybe" would
// make the checker's state sets, and its search, explode).
var model = porcupine.Model{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		byKey := map[string][]porcupine.Operation{}
		var keys []string
		for _, op := range history {
			in, _ := op.Input.(Op) // every input is an Op
			k := in.Key
			if _, ok := byKey[k]; !ok {
				keys = append(keys, k)
			}
			byKey[k] = append(byKey[k], op)
		}
		sort.Strings(keys)
		out := make([][]porcupine.Operation, 0, len(keys))
		for _, k := range keys {
			out = append(out, byKey[k])
		}
		return out
	},
	Init: func() any { return kvState{} },
	Step: func(state, input, _ any) (bool, any) {
		s, _ := state.(kvState) // every state is a kvState
		op, _ := input.(Op)
		switch op.Kind {
		case OpGet:
			return op.Found == s.Found && (!op.Found || op.Value == s.Value), s
		case OpSet:
			return true, kvState{Value: op.Value, Found: true}
		case OpCAS:
			match := s.Found && !op.ExpectAbsent && s.Value == op.Expected || !s.Found && op.ExpectAbsent
			next := kvState{Value: op.Value, Found: true}
			switch {
			case op.Outcome == Unknown && match, op.Swapped && match:
				return true, next
			case op.Outcome == Unknown, !op.Swapped && !match:
				return true, s
			}
			return false, s
		}
		return false, s
	},
	Hash: func(state any) uint64 {
		s, _ := state.(kvState)
		if !s.Found {
			return 0
		}
		return xxhash.Sum64String(s.Value) | 1
	},
	DescribeOperation: func(input, _ any) string {
		op, _ := input.(Op)
		tag := ""
		if op.Outcome == Unknown {
			tag = " ?"
		}
		switch op.Kind {
		case OpGet:
			if !op.Found {
				return "get() -> absent [" + op.Via + "]"
			}
			return fmt.Sprintf("get() -> %s [%s]", op.Value, op.Via)
		case OpSet:
			return fmt.Sprintf("set(%s)%s [%s]", op.Value, tag, op.Via)
		default:
			exp := op.Expected
			if op.ExpectAbsent {
				exp = "absent"
			}
			return fmt.Sprintf("cas(%s, %s) -> %v%s [%s]", exp, op.Value, op.Swapped, tag, op.Via)
		}
	},
	DescribeState: func(state any) string {
		s, _ := state.(kvState)
		if !s.Found {
			return "absent"
		}
		return s.Value
	},
}

// LinResult is the outcome of the linearizability check.
type LinResult struct {
	// Keys checked, and how many were not linearizable or timed out.
	Keys, Illegal, TimedOut int
	// Ops is how many operations the history held.
	Ops int
	// BadKeys names (some of) the failing keys.
	BadKeys []string
	// MaxOps and MaxUnknown are the most operations, and the most
	// operations of unknown outcome, that one key's history held: the
	// size of the largest search.
	MaxOps, MaxUnknown int
	// Took is the checker's time; Slowest the longest check of one key,
	// SlowestKey that key.
	Took       time.Duration
	Slowest    time.Duration
	SlowestKey string
}

// Linearizable is true when every key passed.
func (r LinResult) Linearizable() bool { return r.Illegal == 0 && r.TimedOut == 0 }

// toPorcupine turns ops into porcupine operations; unknown operations
// "return" after everything else (end), so they may linearize anywhere
// after their call.
func toPorcupine(ops []Op) []porcupine.Operation {
	var end int64
	for _, op := range ops {
		end = max(end, op.Return)
	}
	out := make([]porcupine.Operation, 0, len(ops))
	for _, op := range ops {
		ret := op.Return
		if op.Outcome == Unknown {
			ret = end + 1
		}
		out = append(out, porcupine.Operation{ClientId: op.Client, Input: op, Output: nil, Call: op.Call, Return: ret})
	}
	return out
}

// CheckLinearizable checks ops key by key (two keys at a time), each
// within perKey: a timeout counts as a failure. For each failing key (at
// most 5) it writes the porcupine visualization and the key's history to
// outDir (when not empty).
func CheckLinearizable(ops []Op, perKey time.Duration, outDir string) LinResult {
	start := time.Now()
	byKey := map[string][]Op{}
	for _, op := range ops {
		byKey[op.Key] = append(byKey[op.Key], op)
	}
	keys := make([]string, 0, len(byKey))
	for k := range byKey {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	res := LinResult{Keys: len(keys), Ops: len(ops)}
	for _, k := range keys {
		unknown := 0
		for _, op := range byKey[k] {
			if op.Outcome == Unknown {
				unknown++
			}
		}
		res.MaxOps = max(res.MaxOps, len(byKey[k]))
		res.MaxUnknown = max(res.MaxUnknown, unknown)
	}
	m := model
	var mu sync.Mutex
	work := make(chan string) // closed by the feeder below
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range work {
				began := time.Now()
				r := porcupine.CheckOperationsTimeout(m, toPorcupine(byKey[k]), perKey)
				took := time.Since(began)
				mu.Lock()
				if took > res.Slowest {
					res.Slowest, res.SlowestKey = took, k
				}
				if r == porcupine.Ok {
					mu.Unlock()
					continue
				}
				if r == porcupine.Illegal {
					res.Illegal++
				} else {
					res.TimedOut++
				}
				keep := len(res.BadKeys) < 5
				if keep {
					res.BadKeys = append(res.BadKeys, k+" ("+string(r)+")")
				}
				mu.Unlock()
				if keep && outDir != "" {
					saveKey(m, k, byKey[k], r == porcupine.Illegal, perKey, outDir)
				}
			}
		}()
	}
	for _, k := range keys {
		work <- k
	}
	close(work)
	wg.Wait()
	res.Took = time.Since(start)
	return res
}

// saveKey writes key's history (JSON) and, when the key is illegal,
// porcupine's visualization. A key that timed out gets none: drawing the
// partial search of a key the checker gave up on took 20 minutes once;
// TestRecheckSavedHistories re-checks its history instead.
func saveKey(m porcupine.Model, key string, ops []Op, illegal bool, perKey time.Duration, outDir string) {
	name := strings.NewReplacer("/", "_").Replace(key)
	if b, err := json.MarshalIndent(ops, "", " "); err == nil {
		_ = os.WriteFile(filepath.Join(outDir, name+".history.json"), b, 0o644) // diagnostics: best effort
	}
	if !illegal {
		return
	}
	_, info := porcupine.CheckOperationsVerbose(m, toPorcupine(ops), perKey)
	_ = porcupine.VisualizePath(m, info, filepath.Join(outDir, name+".html")) // diagnostics: best effort
}
