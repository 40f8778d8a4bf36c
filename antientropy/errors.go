package antientropy

import "errors"

var (
	// ErrBadRequest is returned for a malformed tree or fetch request (a
	// level, node or bucket out of range, another tree shape).
	ErrBadRequest = errors.New("antientropy: bad request")
	// ErrNotReady is returned while a partition's tree is being built from
	// disk; the exchange is retried next cycle.
	ErrNotReady = errors.New("antientropy: tree not ready")
	// ErrClosed is returned once the Service is closed.
	ErrClosed = errors.New("antientropy: closed")
	// ErrUnknownPeer is returned for a peer whose address is unknown.
	ErrUnknownPeer = errors.New("antientropy: unknown peer")
)
