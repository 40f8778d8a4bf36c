package resp

import "errors"

var (
	// ErrInvalidConfig is returned by Config.Validate and New for a bad
	// configuration.
	ErrInvalidConfig = errors.New("resp: invalid config")
	// ErrClosed is returned by Serve after Close.
	ErrClosed = errors.New("resp: server closed")
	// ErrRequestTooLarge closes a connection whose client sent more than
	// Config.MaxRequestBytes without waiting for a reply.
	ErrRequestTooLarge = errors.New("resp: request too large")
)
