// Package workgroup counts the work an owner must wait for when it closes,
// and refuses new work once it has begun to close.
//
// A bare sync.WaitGroup cannot do this for requests: a request that passed
// its owner's "closed?" check can still call Add after Close has called
// Wait, so Close returns while that request's work runs against resources
// Close is about to release (and the race detector reports the misuse).
// Group takes the closed check and the Add under one lock, as
// consensus.Transport's begin does.
package workgroup

import "sync"

// Group is a WaitGroup that refuses Add after Close. The zero value is
// ready to use; a Group must not be copied after first use.
type Group struct {
	mu     sync.Mutex
	closed bool
	wg     sync.WaitGroup
}

// Add counts n units of work and reports true, or reports false (counting
// nothing) once Close has begun. Each counted unit ends with Done.
func (g *Group) Add(n int) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	g.wg.Add(n)
	return true
}

// Done ends one unit counted by Add.
func (g *Group) Done() { g.wg.Done() }

// Go runs f on a goroutine counted by g and reports true, or reports false
// without running f once Close has begun.
func (g *Group) Go(f func()) bool {
	if !g.Add(1) {
		return false
	}
	go func() {
		defer g.wg.Done()
		f()
	}()
	return true
}

// Close refuses every later Add and waits for the work already counted.
// Calling it again waits again (returning at once when nothing runs).
func (g *Group) Close() {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
	g.wg.Wait()
}

// Closed reports whether Close has begun.
func (g *Group) Closed() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.closed
}
