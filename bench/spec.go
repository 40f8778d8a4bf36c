package bench

import (
	"errors"
	"fmt"
	"math/bits"
	"slices"
	"strings"
	"time"

	"github.com/cespare/xxhash/v2"
)

// Workload names.
const (
	WorkloadA   = "A"   // 50% read, 50% update
	WorkloadB   = "B"   // 95% read, 5% update
	WorkloadC   = "C"   // read only
	WorkloadW   = "W"   // write only
	WorkloadCAS = "CAS" // read, then compare-and-set the value to the next integer
	WorkloadL   = "L"   // prefix list
	WorkloadT   = "T"   // read K keys, then a transaction writing them if none changed
)

// Workloads lists every workload in the order reports show them.
var Workloads = []string{WorkloadA, WorkloadB, WorkloadC, WorkloadW, WorkloadCAS, WorkloadL, WorkloadT}

// readFraction is the share of reads in each read/update workload.
var readFraction = map[string]float64{WorkloadA: 0.5, WorkloadB: 0.95, WorkloadC: 1, WorkloadW: 0}

// Key distributions.
const (
	Uniform = "uniform"
	Zipfian = "zipfian"
)

// Spec says what to run. Build it from DefaultSpec.
type Spec struct {
	// Workload is one of Workloads.
	Workload string `json:"workload"`
	// Level is the consistency level passed to the driver ("one",
	// "quorum", "all", "linearizable" for ringkv; a driver may accept
	// others or ignore it).
	Level string `json:"level"`
	// Keys is the key space; keys are "bench:%08d" (Key). HotKeys is the
	// number of CAS counters, "benchcas:%06d" (CASKey).
	Keys    int `json:"keys"`
	HotKeys int `json:"hot_keys"`
	// ValueSize is the size of written values in bytes.
	ValueSize int `json:"value_size"`
	// Distribution is Uniform or Zipfian (Go's rand.Zipf with s=1.01).
	Distribution string `json:"distribution"`
	// Concurrency is the number of concurrent callers.
	Concurrency int `json:"concurrency"`
	// Duration and Ops bound the run: it stops at whichever comes first;
	// zero means no bound of that kind (but one of them must be set).
	Duration time.Duration `json:"duration"`
	Ops      int64         `json:"ops"`
	// Rate, when positive, runs open-loop at this many operations per
	// second; zero runs closed-loop.
	Rate float64 `json:"rate"`
	// ListLimit is the page size of workload L.
	ListLimit int `json:"list_limit"`
	// TxnKeys is K, the keys of each workload-T transaction (at most
	// MaxTxnKeys).
	TxnKeys int `json:"txn_keys,omitempty"`
	// TxnSamePartition puts workload T's K keys in one partition; by
	// default they fall in K different partitions.
	TxnSamePartition bool `json:"txn_same_partition,omitempty"`
	// Partitions is the number of partitions (a power of two) of the
	// ringkv cluster under test, by which workload T groups the keys as
	// the ring does (PartitionOf). A peer gets the same spec, so it runs
	// the same key names.
	Partitions int `json:"partitions,omitempty"`
	// OpTimeout bounds every operation.
	OpTimeout time.Duration `json:"op_timeout"`
	// Seed makes key choices repeatable.
	Seed uint64 `json:"seed"`
}

// DefaultSpec returns the defaults: workload A at quorum, 10,000 keys of
// 100 bytes, uniform, 32 callers, 10 s, closed loop.
func DefaultSpec() Spec {
	return Spec{
		Workload:     WorkloadA,
		Level:        "quorum",
		Keys:         10000,
		HotKeys:      100,
		ValueSize:    100,
		Distribution: Uniform,
		Concurrency:  32,
		Duration:     10 * time.Second,
		ListLimit:    100,
		TxnKeys:      2,
		Partitions:   64,
		OpTimeout:    5 * time.Second,
		Seed:         1,
	}
}

// ErrInvalidSpec wraps every problem Validate finds.
var ErrInvalidSpec = errors.New("bench: invalid spec")

// Validate reports every problem with s, joined, each wrapping
// ErrInvalidSpec.
func (s Spec) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrInvalidSpec}, args...)...))
	}
	if !slices.Contains(Workloads, s.Workload) {
		bad("unknown workload %q (want one of %s)", s.Workload, strings.Join(Workloads, ", "))
	}
	if s.Keys < 1 {
		bad("keys must be positive, got %d", s.Keys)
	}
	if s.HotKeys < 1 {
		bad("hot keys must be positive, got %d", s.HotKeys)
	}
	if s.ValueSize < 1 {
		bad("value size must be positive, got %d", s.ValueSize)
	}
	if s.Distribution != Uniform && s.Distribution != Zipfian {
		bad("unknown distribution %q (want uniform or zipfian)", s.Distribution)
	}
	if s.Concurrency < 1 {
		bad("concurrency must be positive, got %d", s.Concurrency)
	}
	if s.Duration < 0 || s.Ops < 0 || s.Rate < 0 {
		bad("duration, ops and rate must not be negative")
	}
	if s.Duration == 0 && s.Ops == 0 {
		bad("set a duration or an op count")
	}
	if s.Workload == WorkloadL && s.ListLimit < 1 {
		bad("list limit must be positive, got %d", s.ListLimit)
	}
	if s.Workload == WorkloadT {
		if s.TxnKeys < 1 || s.TxnKeys > MaxTxnKeys {
			bad("txn keys must be in [1, %d], got %d", MaxTxnKeys, s.TxnKeys)
		}
		if s.Partitions < 1 || s.Partitions&(s.Partitions-1) != 0 {
			bad("partitions must be a power of two, got %d", s.Partitions)
		} else if !s.TxnSamePartition && s.TxnKeys > s.Partitions {
			bad("%d txn keys in different partitions need as many partitions, got %d", s.TxnKeys, s.Partitions)
		}
	}
	if s.OpTimeout <= 0 {
		bad("op timeout must be positive")
	}
	return errors.Join(errs...)
}

// MaxTxnKeys bounds Spec.TxnKeys: ringkv's limit of keys per transaction.
const MaxTxnKeys = 128

// Label names the spec's workload in reports: the workload, and for T
// its K and "-1p" when the keys share one partition ("T4", "T2-1p").
func (s Spec) Label() string {
	if s.Workload != WorkloadT {
		return s.Workload
	}
	l := fmt.Sprintf("%s%d", s.Workload, s.TxnKeys)
	if s.TxnSamePartition {
		l += "-1p"
	}
	return l
}

// PartitionOf returns key's partition among partitions (a power of two):
// the one whose slice of the uint64 token space holds xxhash64(key), as
// ring.Ring.PartitionOf computes it.
func PartitionOf(key string, partitions int) int {
	return int(xxhash.Sum64String(key) >> (64 - bits.TrailingZeros(uint(partitions))))
}

// Key returns the name of key i.
func Key(i int) string { return fmt.Sprintf("bench:%08d", i) }

// CASKey returns the name of the CAS workload's counter i; counters live
// apart from the other workloads' keys so that writes never clobber them.
func CASKey(i int) string { return fmt.Sprintf("benchcas:%06d", i) }
