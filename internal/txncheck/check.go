// Package txncheck checks a history of list-append transactions for strict
// serializability, by Elle's inference (Kingsbury and Alvaro, "Elle:
// Inferring Isolation Anomalies from Experimental Observations", 2020):
// every key holds a list, every transaction reads some keys and appends
// a unique element to some, so a read reveals the order of every append
// before it. From the reads the checker infers the dependencies between
// transactions, write-write (ww: appended next), write-read (wr: read
// what it appended) and read-write (rw: read the list just before it
// appended), adds real-time order (rt: one completed before the other
// began), and looks for a cycle: a history is strictly serializable only
// if the graph is acyclic, with anomalies that need no cycle (reading an
// aborted or never-written element, orders that two reads disagree on,
// an element appended twice) checked on the way.
//
// The checker is sound for what it reports (every anomaly is real given
// the history) and, like Elle, not complete: an append whose position no
// read revealed adds no edge.
package txncheck

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"gonum.org/v1/gonum/graph"
	"gonum.org/v1/gonum/graph/simple"
	"gonum.org/v1/gonum/graph/topo"
)

// Outcome is what the client learnt of a transaction.
type Outcome int

const (
	// OK: committed; its reads are known.
	OK Outcome = iota + 1
	// Fail: known not to have taken effect (refused, aborted, a conflict
	// that applied nothing).
	Fail
	// Unknown: it may or may not have taken effect (a timeout, an unknown
	// outcome); its reads are not known.
	Unknown
)

func (o Outcome) String() string {
	switch o {
	case OK:
		return "ok"
	case Fail:
		return "fail"
	case Unknown:
		return "unknown"
	default:
		return fmt.Sprintf("Outcome(%d)", int(o))
	}
}

// Mop is one micro-operation: a read of a key's whole list, or an append
// of one element, unique over the history for its key.
type Mop struct {
	Key    string
	Append bool
	Value  int   // Append: the element
	Read   []int // read: the list (OK transactions only)
}

// Txn is one transaction of the history. Invoke and Complete bracket it
// in real time (Complete is ignored unless Outcome is OK).
type Txn struct {
	Invoke, Complete time.Time
	Outcome          Outcome
	Mops             []Mop
	// Label is free text shown in reports (say, the client and node).
	Label string
}

// Anomaly is one violation found.
type Anomaly struct {
	// Kind is Elle's name where there is one: G0 (a cycle of ww edges),
	// G1a (read an aborted append), G1c (a cycle of ww and wr edges),
	// G-single (a cycle with exactly one rw edge), G2 (more), with
	// "-realtime" when the cycle needs rt edges; or incompatible-order,
	// duplicate-append, garbage-read.
	Kind   string
	Detail string
	// Txns are the indexes in the history of the transactions involved
	// (the cycle, in order, for a cycle).
	Txns []int
}

// Result is the checker's verdict.
type Result struct {
	Anomalies []Anomaly
	// Txns counts the transactions checked (OK, and Unknown ones whose
	// appends were seen), Edges the dependency edges inferred (rt edges
	// not counted), Keys the keys seen.
	Txns, Edges, Keys int
}

// Valid reports whether no anomaly was found.
func (r Result) Valid() bool { return len(r.Anomalies) == 0 }

func (r Result) String() string {
	if r.Valid() {
		return fmt.Sprintf("strictly serializable as far as inferred: %d transactions, %d keys, %d dependency edges", r.Txns, r.Keys, r.Edges)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d anomalies (%d transactions, %d keys, %d edges):", len(r.Anomalies), r.Txns, r.Keys, r.Edges)
	for i, a := range r.Anomalies {
		if i == 10 {
			fmt.Fprintf(&b, "\n  ... and %d more", len(r.Anomalies)-10)
			break
		}
		fmt.Fprintf(&b, "\n  %s: %s", a.Kind, a.Detail)
	}
	return b.String()
}

// edgeKind labels a dependency.
type edgeKind uint8

const (
	ww edgeKind = 1 << iota
	wr
	rw
	rt
)

func (k edgeKind) String() string {
	var parts []string
	for _, e := range []struct {
		k    edgeKind
		name string
	}{{ww, "ww"}, {wr, "wr"}, {rw, "rw"}, {rt, "rt"}} {
		if k&e.k != 0 {
			parts = append(parts, e.name)
		}
	}
	return strings.Join(parts, "+")
}

type appendKey struct {
	key   string
	value int
}

// checker holds one run's state.
type checker struct {
	h       []Txn
	res     Result
	writer  map[appendKey]int // the transaction that appended each element
	order   map[string][]int  // each key's longest observed list
	g       *simple.DirectedGraph
	kinds   map[[2]int64]edgeKind
	include []bool // transactions in the graph
}

// Check checks h and returns every anomaly found.
func Check(h []Txn) Result {
	c := &checker{h: h, writer: map[appendKey]int{}, order: map[string][]int{}, g: simple.NewDirectedGraph(), kinds: map[[2]int64]edgeKind{}, include: make([]bool, len(h))}
	c.indexAppends()
	c.orders()
	seen := c.seenAppends()
	for i, t := range h {
		switch t.Outcome {
		case OK:
			c.include[i] = true
		case Unknown:
			// It took effect if any of its appends was read.
			for _, m := range t.Mops {
				if m.Append && seen[appendKey{m.Key, m.Value}] {
					c.include[i] = true
				}
			}
		}
		if c.include[i] {
			c.res.Txns++
			c.g.AddNode(simple.Node(i))
		}
	}
	c.readAnomalies()
	c.dependencies()
	c.realtime()
	c.cycles()
	c.res.Keys = len(c.order)
	return c.res
}

func (c *checker) anomaly(kind string, txns []int, format string, args ...any) {
	c.res.Anomalies = append(c.res.Anomalies, Anomaly{Kind: kind, Txns: txns, Detail: fmt.Sprintf(format, args...)})
}

// indexAppends maps each element to its transaction; an element appended
// twice is an anomaly of the history (the workload's promise broken).
func (c *checker) indexAppends() {
	for i, t := range c.h {
		for _, m := range t.Mops {
			if !m.Append {
				continue
			}
			k := appendKey{m.Key, m.Value}
			if j, dup := c.writer[k]; dup {
				c.anomaly("duplicate-append", []int{j, i}, "element %d appended to %q by transactions %d and %d", m.Value, m.Key, j, i)
				continue
			}
			c.writer[k] = i
		}
	}
}

// orders takes each key's longest read as its version order and checks
// every other read of the key is a prefix of it.
func (c *checker) orders() {
	type read struct {
		txn  int
		list []int
	}
	reads := map[string][]read{}
	for i, t := range c.h {
		if t.Outcome != OK {
			continue
		}
		for _, m := range t.Mops {
			if !m.Append && m.Read != nil {
				reads[m.Key] = append(reads[m.Key], read{i, m.Read})
				if len(m.Read) > len(c.order[m.Key]) {
					c.order[m.Key] = m.Read
				}
			} else if m.Append {
				if _, ok := c.order[m.Key]; !ok {
					c.order[m.Key] = nil
				}
			}
		}
	}
	for key, rs := range reads {
		longest := c.order[key]
		for _, r := range rs {
			if !slices.Equal(r.list, longest[:len(r.list)]) {
				c.anomaly("incompatible-order", []int{r.txn}, "transaction %d read %q as %v, not a prefix of %v", r.txn, key, r.list, longest)
			}
		}
		seen := map[int]bool{}
		for _, v := range longest {
			if seen[v] {
				c.anomaly("duplicate-append", nil, "element %d appears twice in %q: %v", v, key, longest)
			}
			seen[v] = true
		}
	}
}

// seenAppends returns the elements some OK read returned.
func (c *checker) seenAppends() map[appendKey]bool {
	seen := map[appendKey]bool{}
	for key, list := range c.order {
		for _, v := range list {
			seen[appendKey{key, v}] = true
		}
	}
	return seen
}

// readAnomalies: an element no transaction appended (garbage) or one a
// failed transaction appended (G1a, aborted read).
func (c *checker) readAnomalies() {
	for key, list := range c.order {
		for _, v := range list {
			w, ok := c.writer[appendKey{key, v}]
			switch {
			case !ok:
				c.anomaly("garbage-read", nil, "element %d of %q was never appended", v, key)
			case c.h[w].Outcome == Fail:
				c.anomaly("G1a", []int{w}, "element %d of %q was appended by transaction %d, which failed", v, key, w)
			}
		}
	}
}

func (c *checker) edge(from, to int64, k edgeKind) {
	if from == to {
		return
	}
	key := [2]int64{from, to}
	if c.kinds[key]&k == k {
		return
	}
	if c.kinds[key] == 0 {
		c.g.SetEdge(c.g.NewEdge(simple.Node(from), simple.Node(to)))
		if k != rt {
			c.res.Edges++
		}
	}
	c.kinds[key] |= k
}

// dependencies infers ww, wr and rw edges from the version orders.
func (c *checker) dependencies() {
	writerOf := func(key string, pos int) (int, bool) {
		w, ok := c.writer[appendKey{key, c.order[key][pos]}]
		return w, ok && c.include[w]
	}
	for key, list := range c.order {
		for i := 1; i < len(list); i++ {
			a, okA := writerOf(key, i-1)
			b, okB := writerOf(key, i)
			if okA && okB {
				c.edge(int64(a), int64(b), ww)
			}
		}
	}
	for i, t := range c.h {
		if !c.include[i] || t.Outcome != OK {
			continue
		}
		for _, m := range t.Mops {
			if m.Append || m.Read == nil {
				continue
			}
			if n := len(m.Read); n > 0 {
				if w, ok := writerOf(m.Key, n-1); ok {
					c.edge(int64(w), int64(i), wr)
				}
			}
			if n := len(m.Read); n < len(c.order[m.Key]) {
				if w, ok := writerOf(m.Key, n); ok {
					c.edge(int64(i), int64(w), rw)
				}
			}
		}
	}
}

// realtime adds real-time order without n^2 edges: a chain of virtual
// nodes, one per completion in time order; each OK transaction points to
// its completion's node, and each transaction is pointed to by the node
// of the last completion before it was invoked. So T1 reaches T2 through
// the chain exactly when T1 completed before T2 began.
func (c *checker) realtime() {
	type event struct {
		at  time.Time
		txn int
	}
	var done []event
	for i, t := range c.h {
		if c.include[i] && t.Outcome == OK {
			done = append(done, event{t.Complete, i})
		}
	}
	sort.Slice(done, func(a, b int) bool { return done[a].at.Before(done[b].at) })
	base := int64(len(c.h))
	for j, e := range done {
		c.g.AddNode(simple.Node(base + int64(j)))
		c.edge(int64(e.txn), base+int64(j), rt)
		if j > 0 {
			c.edge(base+int64(j-1), base+int64(j), rt)
		}
	}
	for i, t := range c.h {
		if !c.include[i] {
			continue
		}
		// The last completion strictly before the invocation.
		j := sort.Search(len(done), func(j int) bool { return !done[j].at.Before(t.Invoke) }) - 1
		if j >= 0 {
			c.edge(base+int64(j), int64(i), rt)
		}
	}
}

// cycles reports one cycle per strongly connected component of more than
// one node.
func (c *checker) cycles() {
	for _, scc := range topo.TarjanSCC(c.g) {
		if len(scc) < 2 {
			continue
		}
		in := map[int64]bool{}
		for _, n := range scc {
			in[n.ID()] = true
		}
		start := int64(-1)
		for _, n := range scc {
			if n.ID() < int64(len(c.h)) {
				start = n.ID()
				break
			}
		}
		if start < 0 {
			continue // virtual nodes only: impossible, the chain is acyclic
		}
		cyc := c.shortestCycle(start, in)
		c.reportCycle(cyc)
	}
}

// shortestCycle finds, by breadth-first search inside the component, a
// shortest path from start back to itself.
func (c *checker) shortestCycle(start int64, in map[int64]bool) []int64 {
	prev := map[int64]int64{}
	queue := []int64{start}
	visited := map[int64]bool{}
	for len(queue) > 0 {
		n := queue[0]
		queue = queue[1:]
		to := c.g.From(n)
		var next []graph.Node
		for to.Next() {
			next = append(next, to.Node())
		}
		for _, m := range next {
			id := m.ID()
			if !in[id] {
				continue
			}
			if id == start {
				path := []int64{n}
				for path[len(path)-1] != start {
					path = append(path, prev[path[len(path)-1]])
				}
				slices.Reverse(path)
				return path
			}
			if !visited[id] {
				visited[id] = true
				prev[id] = n
				queue = append(queue, id)
			}
		}
	}
	return []int64{start}
}

// reportCycle classifies a cycle (nodes in order, closing back to the
// first) and records it, virtual nodes folded into one rt step.
func (c *checker) reportCycle(cyc []int64) {
	var txns []int
	var steps []string
	var kinds edgeKind
	rws := 0
	for i, from := range cyc {
		to := cyc[(i+1)%len(cyc)]
		k := c.kinds[[2]int64{from, to}]
		kinds |= k
		if k&rw != 0 && k&(ww|wr) == 0 {
			rws++
		}
		if from < int64(len(c.h)) {
			txns = append(txns, int(from))
			steps = append(steps, fmt.Sprintf("T%d %s", from, c.describe(int(from))))
		}
		if k != rt || from < int64(len(c.h)) {
			steps = append(steps, "-"+k.String()+"->")
		}
	}
	kind := "G0"
	switch {
	case rws == 1:
		kind = "G-single"
	case rws > 1:
		kind = "G2"
	case kinds&wr != 0:
		kind = "G1c"
	}
	if kinds&rt != 0 && kinds&^rt == 0 {
		kind = "realtime"
	} else if kinds&rt != 0 {
		kind += "-realtime"
	}
	c.anomaly(kind, txns, "cycle %s T%d", strings.Join(steps, " "), cyc[0])
}

// describe summarizes a transaction for a report.
func (c *checker) describe(i int) string {
	t := c.h[i]
	var mops []string
	for _, m := range t.Mops {
		if m.Append {
			mops = append(mops, fmt.Sprintf("append(%s,%d)", m.Key, m.Value))
		} else {
			mops = append(mops, fmt.Sprintf("r(%s)=%v", m.Key, m.Read))
		}
	}
	label := ""
	if t.Label != "" {
		label = " " + t.Label
	}
	return fmt.Sprintf("[%s%s %s]", t.Outcome, label, strings.Join(mops, " "))
}
