package antientropy

import (
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Config tunes a Service. DefaultConfig returns the defaults; zero fields
// other than NodeID and the ones documented as "0 disables" take them.
type Config struct {
	// NodeID is this node's id. Required.
	NodeID string
	// Interval is how often every partition this node replicates is
	// exchanged with each of its other replicas. Default 1m; a negative
	// value disables scheduled exchanges (Repair still works). Shorter
	// finds divergence sooner at the cost of one small RPC per
	// (partition, peer) per interval when nothing differs.
	Interval time.Duration
	// KeysPerSec and BytesPerSec bound the records this node transfers by
	// anti-entropy, pulled and pushed together, so that repair does not
	// crowd out foreground traffic. Defaults 20,000 keys/s and 16 MiB/s.
	KeysPerSec  float64
	BytesPerSec float64
	// PageRecords is the most records one fetch or push carries. Default 256.
	PageRecords int
	// ScrubPerSec is how many stored records per second the scrubber
	// re-reads and verifies. Default 2,000; negative disables the scrubber.
	// A full pass over R records takes R/ScrubPerSec.
	ScrubPerSec float64
	// ScrubBytesPerSec bounds the bytes the scrubber reads. Default 8 MiB/s.
	ScrubBytesPerSec float64
	// ScrubPassInterval is the shortest time from the start of one scrub
	// pass to the start of the next. A pass over a large store takes
	// longer anyway (R/ScrubPerSec); on a small or empty one the scrubber
	// otherwise re-reads every partition back to back, waking the node
	// several times a second while it is idle. Default 1m; negative
	// starts each pass as soon as the last one ends.
	ScrubPassInterval time.Duration
	// TombstoneGrace is how long a tombstone, or a value past its expiry,
	// is kept at least. After it, such a record is collected once every
	// replica of its partition holds it (or a newer record, or nothing). Default 72h; negative never
	// collects. It must exceed the longest time a replica can be away and
	// come back with old data (hints, backups).
	TombstoneGrace time.Duration
	// GCInterval is how often tombstones are looked for. Default 10m.
	GCInterval time.Duration
	// RPCTimeout bounds each RPC to a peer. Default 10s.
	RPCTimeout time.Duration
	// Logger; nil discards.
	Logger *slog.Logger
	// Now returns the time; nil means time.Now. For tombstone ages.
	Now func() time.Time
}

// DefaultConfig returns fresh defaults.
func DefaultConfig() Config {
	return Config{
		Interval:          time.Minute,
		KeysPerSec:        20000,
		BytesPerSec:       16 << 20,
		PageRecords:       256,
		ScrubPerSec:       2000,
		ScrubBytesPerSec:  8 << 20,
		ScrubPassInterval: time.Minute,
		TombstoneGrace:    72 * time.Hour,
		GCInterval:        10 * time.Minute,
		RPCTimeout:        10 * time.Second,
	}
}

func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.Interval == 0 {
		c.Interval = d.Interval
	}
	if c.KeysPerSec == 0 {
		c.KeysPerSec = d.KeysPerSec
	}
	if c.BytesPerSec == 0 {
		c.BytesPerSec = d.BytesPerSec
	}
	if c.PageRecords == 0 {
		c.PageRecords = d.PageRecords
	}
	if c.ScrubPerSec == 0 {
		c.ScrubPerSec = d.ScrubPerSec
	}
	if c.ScrubBytesPerSec == 0 {
		c.ScrubBytesPerSec = d.ScrubBytesPerSec
	}
	if c.ScrubPassInterval == 0 {
		c.ScrubPassInterval = d.ScrubPassInterval
	}
	if c.TombstoneGrace == 0 {
		c.TombstoneGrace = d.TombstoneGrace
	}
	if c.GCInterval == 0 {
		c.GCInterval = d.GCInterval
	}
	if c.RPCTimeout == 0 {
		c.RPCTimeout = d.RPCTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Validate reports every problem with c, joined.
func (c Config) Validate() error {
	var errs []error
	if c.NodeID == "" {
		errs = append(errs, errors.New("antientropy: NodeID is required"))
	}
	if c.KeysPerSec < 0 || c.BytesPerSec < 0 {
		errs = append(errs, fmt.Errorf("antientropy: KeysPerSec %v and BytesPerSec %v must not be negative", c.KeysPerSec, c.BytesPerSec))
	}
	if c.PageRecords < 0 {
		errs = append(errs, fmt.Errorf("antientropy: PageRecords %d is negative", c.PageRecords))
	}
	if c.GCInterval < 0 || c.RPCTimeout < 0 {
		errs = append(errs, errors.New("antientropy: GCInterval and RPCTimeout must not be negative"))
	}
	return errors.Join(errs...)
}
