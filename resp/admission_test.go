package resp

import (
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/ringkv/ringkv/coordinator"
)

// gate is an Admitter with a fixed number of slots.
type gate struct {
	mu    sync.Mutex
	free  int
	bytes int64 // of the last command admitted
}

func (g *gate) Admit(n int64) (func(), error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.free == 0 {
		return nil, fmt.Errorf("%w: resp requests in flight at the node's bound", coordinator.ErrOverloaded)
	}
	g.free--
	g.bytes = n
	return func() {
		g.mu.Lock()
		defer g.mu.Unlock()
		g.free++
	}, nil
}

func (g *gate) set(n int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.free = n
}

// TestBusyBeyondBudget: a data command refused by the node's admission
// control answers -BUSY and does nothing; connection commands are not
// admitted (PING answers), and the connection stays usable.
func TestBusyBeyondBudget(t *testing.T) {
	st := newMemStore()
	g := &gate{}
	_, addr := startServer(t, DefaultConfig(), Deps{Store: st, Admit: g})
	r := newRedis(t, addr, 2)
	ctx := t.Context()
	err := r.Set(ctx, "k", "v", 0).Err()
	if err == nil || !strings.HasPrefix(err.Error(), "BUSY ") || !strings.Contains(err.Error(), "overloaded") {
		t.Fatalf("set with no slot: got %v, want -BUSY ... overloaded", err)
	}
	if _, ok := st.live("k"); ok {
		t.Fatal("refused set stored the key")
	}
	if err := r.Ping(ctx).Err(); err != nil {
		t.Fatalf("ping with no slot: %v", err)
	}
	// Pipelined commands are admitted one by one.
	p := r.Pipeline()
	set, get := p.Set(ctx, "k", "v", 0), p.Get(ctx, "k")
	_, _ = p.Exec(ctx)
	if set.Err() == nil || get.Err() == nil || !strings.HasPrefix(get.Err().Error(), "BUSY") {
		t.Fatalf("pipeline with no slot: set %v, get %v; want -BUSY each", set.Err(), get.Err())
	}
	g.set(1)
	if err := r.Set(ctx, "k", "value", 0).Err(); err != nil {
		t.Fatalf("set with a slot: %v", err)
	}
	g.mu.Lock()
	n, free := g.bytes, g.free
	g.mu.Unlock()
	if n != int64(len("set")+len("k")+len("value")) || free != 1 {
		t.Fatalf("admitted %d bytes, %d slots free after the answer; want %d and 1", n, free, len("setkvalue"))
	}
}
