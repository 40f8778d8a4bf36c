// Package loglimit keeps a log line about a remote peer (a failed
// handshake, a refused connection, a client sending garbage) to at most
// one a minute per host, so that a scanner or a misbehaving client cannot
// flood the log. It starts no goroutines.
package loglimit

import (
	"net"
	"sync"
	"time"
)

// maxHosts bounds the hosts remembered: past it, every host is forgotten
// rather than the map growing.
const maxHosts = 4096

// Limiter allows a line per host at most once a minute. The zero value is
// ready to use; it is safe for concurrent use.
type Limiter struct {
	mu   sync.Mutex
	last map[string]time.Time
}

// Allow reports whether a line about peer ("host:port", or any string)
// may be logged at now, and if so records it. Peers on the same host
// share their minute.
func (l *Limiter) Allow(peer string, now time.Time) bool {
	host, _, err := net.SplitHostPort(peer)
	if err != nil {
		host = peer
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.last == nil {
		l.last = make(map[string]time.Time)
	}
	if t, ok := l.last[host]; ok && now.Sub(t) < time.Minute {
		return false
	}
	if len(l.last) > maxHosts {
		clear(l.last)
	}
	l.last[host] = now
	return true
}
