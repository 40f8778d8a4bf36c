package antientropy

import "errors"

var (
	// ErrBadRequest is returned for a malformed tree or fetch request (a
	// level, node or bucket out of range, another tree shape).
	ErrBadRequest = errors.New("antientropy: bad request")
	// ErrNotReady is returned while a partition's tree is being built from
	// disk; the exchange is retried next cycle.
	ErrNotReady = errors.New("antientropy: tree not ready")
	// ErrNotReplica is returned for a tree or fetch request of a
	// partition this node does not replicate in the ring it holds (or
	// one out of the ring's range): it has no tree of it to compare.
	ErrNotReplica = errors.New("antientropy: not a replica of the partition")
	// ErrClosed is returned once the Service is closed.
	ErrClosed = errors.New("antientropy: closed")
	// ErrUnknownPeer is returned for a peer whose address is unknown.
	ErrUnknownPeer = errors.New("antientropy: unknown peer")
)
