package gossip

import "errors"

var (
	// ErrClosed is returned by Leave, Remove and Admit when the Gossip is
	// closed or closes before the change is applied.
	ErrClosed = errors.New("gossip: closed")

	// ErrInvalidConfig marks every problem reported by Config.Validate.
	ErrInvalidConfig = errors.New("gossip: invalid config")

	// ErrCorrupt is returned by Open when the persisted ring state cannot be
	// read back (bad magic, checksum or encoding). The operator must act:
	// restore the file or delete it and re-admit the node.
	ErrCorrupt = errors.New("gossip: corrupt ring state")

	// ErrNotAlive is returned by Admit when the member is not alive in
	// memberlist with valid metadata, so it cannot be joined yet.
	ErrNotAlive = errors.New("gossip: member not alive")
)
