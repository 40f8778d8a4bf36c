package main

import (
	"errors"
	"fmt"
	"math"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
)

// byteSize is a flag.Value of a size in bytes written with a unit:
// 256MiB, 1GiB, 500MB, or a bare number of bytes. Zero is allowed (the
// flag's "unset").
type byteSize int64

// byteUnits are the units byteSize accepts, longest first so that "MiB"
// is not read as "B".
var byteUnits = []struct {
	suffix string
	mult   int64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
	{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12},
	{"B", 1},
}

// errByteSize is wrapped by every parse failure of a byteSize.
var errByteSize = errors.New("want a size such as 256MiB, 1GiB or 500MB (units B, KiB, MiB, GiB, TiB, KB, MB, GB, TB; a bare number is bytes)")

func parseByteSize(s string) (int64, error) {
	num, mult := strings.TrimSpace(s), int64(1)
	for _, u := range byteUnits {
		if strings.HasSuffix(num, u.suffix) {
			num, mult = strings.TrimSpace(strings.TrimSuffix(num, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%q: %w", s, errByteSize)
	}
	if n > math.MaxInt64/mult {
		return 0, fmt.Errorf("%q is too large: %w", s, errByteSize)
	}
	return n * mult, nil
}

func (b *byteSize) String() string { return strconv.FormatInt(int64(*b), 10) }

func (b *byteSize) Set(s string) error {
	n, err := parseByteSize(s)
	if err != nil {
		return err
	}
	*b = byteSize(n)
	return nil
}

// memoryBudgetUsage is the help text of serve's and dev's --memory-budget.
const memoryBudgetUsage = "memory budget of a node (e.g. 256MiB, 1GiB; at least 64MiB): sizes Badger's memtables and caches, the version cache, the raft log caches and the admission byte budgets from this one number (docs/OPERATIONS.md, \"Memory\"), and sets the Go runtime's soft memory limit to it unless GOMEMLIMIT is set; settings given explicitly keep their value; unset: the defaults (the sizes of a 1GiB budget)"

// setMemoryLimit sets the Go runtime's soft memory limit to the budget of
// the nodes this process runs (budget x nodes), unless the budget is unset
// or the operator set GOMEMLIMIT. It returns the limit set, 0 if none.
func setMemoryLimit(budget int64, nodes int) int64 {
	if budget <= 0 || os.Getenv("GOMEMLIMIT") != "" {
		return 0
	}
	limit := budget * int64(nodes)
	debug.SetMemoryLimit(limit)
	return limit
}
