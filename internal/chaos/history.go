package chaos

import (
	"fmt"
	"sync"
	"time"
)

// OpKind is a linearizable workload operation.
type OpKind int

// The operation kinds of the linearizable workload.
const (
	OpGet OpKind = iota
	OpSet
	OpCAS
)

// String names the kind.
func (k OpKind) String() string {
	switch k {
	case OpGet:
		return "get"
	case OpSet:
		return "set"
	case OpCAS:
		return "cas"
	default:
		return fmt.Sprintf("OpKind(%d)", int(k))
	}
}

// Outcome is what the client learned of an operation.
type Outcome int

// The outcomes. Failed operations are known not to have taken effect
// (and are left out of the history); Unknown ones may or may not have.
const (
	OK Outcome = iota
	Failed
	Unknown
)

// String names the outcome.
func (o Outcome) String() string {
	switch o {
	case OK:
		return "ok"
	case Failed:
		return "fail"
	case Unknown:
		return "unknown"
	default:
		return fmt.Sprintf("Outcome(%d)", int(o))
	}
}

// Op is one completed operation of the linearizable workload.
type Op struct {
	Client int    `json:"client"`
	Key    string `json:"key"`
	Kind   OpKind `json:"kind"`
	// Value is the value written (set, cas) or read (get, when Found).
	Value string `json:"value,omitempty"`
	// Expected is a CAS's expected value; ExpectAbsent: put-if-absent.
	Expected     string `json:"expected,omitempty"`
	ExpectAbsent bool   `json:"expect_absent,omitempty"`
	// Found (get) is whether the key held a value; Swapped (cas) whether
	// the CAS applied. Both are meaningful only when Outcome is OK.
	Found   bool    `json:"found,omitempty"`
	Swapped bool    `json:"swapped,omitempty"`
	Outcome Outcome `json:"outcome"`
	// Current is the value a CAS that did not swap reported (client
	// library only; informational, not checked).
	Current string `json:"current,omitempty"`
	// Via names the path: "client" or the node whose HTTP API served it.
	Via string `json:"via"`
	// Call and Return are nanoseconds since the history began.
	Call   int64  `json:"call"`
	Return int64  `json:"return"`
	Err    string `json:"err,omitempty"`
}

// History collects operations from many goroutines. It is safe for
// concurrent use.
type History struct {
	start time.Time

	mu struct {
		sync.Mutex
		ops []Op
	}
}

// NewHistory starts a history; times are measured from now.
func NewHistory() *History { return &History{start: time.Now()} }

// Now is the time since the history began, in nanoseconds.
func (h *History) Now() int64 { return time.Since(h.start).Nanoseconds() }

// Add records op.
func (h *History) Add(op Op) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.mu.ops = append(h.mu.ops, op)
}

// Ops returns a copy of every recorded operation.
func (h *History) Ops() []Op {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]Op(nil), h.mu.ops...)
}

// Len is how many operations were recorded.
func (h *History) Len() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.mu.ops)
}
