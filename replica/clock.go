package replica

import (
	"fmt"
	"sync"
	"time"
)

// Timestamp is a hybrid-logical-clock timestamp: the upper 48 bits are
// wall-clock milliseconds since the Unix epoch, the lower 16 bits a logical
// counter. Timestamps compare as plain integers.
type Timestamp uint64

const (
	logicalBits = 16
	wallMask    = 1<<48 - 1
)

// MakeTimestamp returns the timestamp for wall (truncated to milliseconds;
// times before the epoch become the epoch) and logical.
func MakeTimestamp(wall time.Time, logical uint16) Timestamp {
	ms := max(wall.UnixMilli(), 0)
	return Timestamp(uint64(ms)&wallMask<<logicalBits | uint64(logical))
}

// WallTime returns the wall-clock part of t, in UTC.
func (t Timestamp) WallTime() time.Time {
	return time.UnixMilli(int64(t >> logicalBits)).UTC()
}

// Logical returns the logical counter of t.
func (t Timestamp) Logical() uint16 { return uint16(t) }

// String formats t as wall time and logical counter.
func (t Timestamp) String() string {
	return fmt.Sprintf("%s+%d", t.WallTime().Format("2006-01-02T15:04:05.000Z07:00"), t.Logical())
}

// DefaultMaxClockOffset is the offset NewClock uses when given 0.
const DefaultMaxClockOffset = 500 * time.Millisecond

// Clock is a hybrid logical clock. It is safe for concurrent use.
type Clock struct {
	now       func() time.Time
	maxOffset time.Duration

	mu struct {
		sync.Mutex
		last Timestamp // the greatest timestamp issued or observed
	}
}

// NewClock returns a clock reading physical time from now (nil means
// time.Now) that refuses remote timestamps more than maxOffset ahead of it
// (0 means DefaultMaxClockOffset).
func NewClock(now func() time.Time, maxOffset time.Duration) *Clock {
	if now == nil {
		now = time.Now
	}
	if maxOffset <= 0 {
		maxOffset = DefaultMaxClockOffset
	}
	return &Clock{now: now, maxOffset: maxOffset}
}

// Physical returns the physical time the clock reads (the time.Now it
// was given, which a test may skew): what a node judges expiry by.
func (c *Clock) Physical() time.Time { return c.now() }

// Now returns a timestamp greater than every timestamp this clock has
// returned or been updated with. When the wall clock stands still or goes
// back, the logical counter advances (carrying into the millisecond).
func (c *Clock) Now() Timestamp {
	phys := MakeTimestamp(c.now(), 0)
	c.mu.Lock()
	defer c.mu.Unlock()
	if phys > c.mu.last {
		c.mu.last = phys
	} else {
		c.mu.last++
	}
	return c.mu.last
}

// Update advances the clock to at least remote, so that every later Now is
// greater than remote. If remote's wall time is more than the maximum offset
// ahead of the local wall clock, the clock is left unchanged and the error
// wraps ErrClockOffset.
func (c *Clock) Update(remote Timestamp) error {
	local := c.now()
	if ahead := remote.WallTime().Sub(local); ahead > c.maxOffset {
		return fmt.Errorf("%w: remote %s is %s ahead, max %s", ErrClockOffset, remote, ahead, c.maxOffset)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if remote > c.mu.last {
		c.mu.last = remote
	}
	return nil
}
