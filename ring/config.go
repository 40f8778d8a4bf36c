package ring

import (
	"errors"
	"fmt"
	"math/bits"
)

// Limits of Config fields.
const (
	MaxPartitions        = 1 << 16
	MaxReplicationFactor = 7
)

// Config fixes the shape of a ring at cluster creation. It never changes
// afterwards: a key's partition depends on Partitions.
type Config struct {
	// Partitions is P, the number of equal slices of the uint64 token space.
	// A power of two in [1, 65536]; default 64. More partitions balance
	// better and move data in smaller pieces, but each costs a Raft group
	// and a Merkle tree on each of its replicas.
	Partitions int
	// ReplicationFactor is N, the length of each preference list while at
	// least N members are Joined. In [1, 7]; default 3.
	ReplicationFactor int
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
	return c
}
