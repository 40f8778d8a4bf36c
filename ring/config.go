package ring

import (
	"errors"
	"fmt"
	"math/bits"

	"github.com/ringkv/ringkv/internal/partid"
)

// Limits of Config fields.
const (
	MaxPartitions        = partid.MaxPartitions
	MaxReplicationFactor = 7
)

// Config fixes the shape of a ring at cluster creation. Only a split
// (Ring.Split) changes it afterwards, doubling Partitions: a key's
// partition depends on Partitions.
type Config struct {
	// Partitions is P, the number of equal slices of the uint64 token space.
	// A power of two in [1, 65536]; default 64. More partitions balance
	// better and move data in smaller pieces, but each costs a Raft group
	// and a Merkle tree on each of its replicas.
	Partitions int
	// ReplicationFactor is N, the length of each preference list while at
	// least N members are Joined. In [1, 7]; default 3.
	ReplicationFactor int

	// base is P0, the Partitions the cluster was created with, kept
	// across splits: it names partitions (Ring.ID) and fixes where a
	// replica stores a record. Zero until New fills it.
	base int
}

// DefaultConfig returns a fresh Config with P=64 and N=3.
func DefaultConfig() Config {
	return Config{Partitions: 64, ReplicationFactor: 3}
}

// Validate reports every problem with c, joined with errors.Join; each one
// wraps ErrInvalid. Zero fields are invalid here: New fills them first.
func (c Config) Validate() error {
	var errs []error
	if c.Partitions < 1 || c.Partitions > MaxPartitions || bits.OnesCount(uint(c.Partitions)) != 1 {
		errs = append(errs, fmt.Errorf("%w: partitions %d is not a power of two in [1, %d]", ErrInvalid, c.Partitions, MaxPartitions))
	}
	if c.ReplicationFactor < 1 || c.ReplicationFactor > MaxReplicationFactor {
		errs = append(errs, fmt.Errorf("%w: replication factor %d is not in [1, %d]", ErrInvalid, c.ReplicationFactor, MaxReplicationFactor))
	}
	if c.base != 0 && (c.base > c.Partitions || bits.OnesCount(uint(c.base)) != 1) {
		errs = append(errs, fmt.Errorf("%w: first partitions %d is not a power of two in [1, %d]", ErrInvalid, c.base, c.Partitions))
	}
	return errors.Join(errs...)
}

// withDefaults returns c with zero fields replaced by their defaults.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.Partitions == 0 {
		c.Partitions = d.Partitions
	}
	if c.ReplicationFactor == 0 {
		c.ReplicationFactor = d.ReplicationFactor
	}
	if c.base == 0 {
		c.base = c.Partitions
	}
	return c
}
