package chaos

import (
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// Mode is what a Proxy does to the traffic of its link.
type Mode int

// The proxy modes.
const (
	// Pass forwards bytes both ways.
	Pass Mode = iota
	// Blackhole accepts connections and reads their bytes but delivers
	// nothing, in either direction: both ends see silence until their own
	// timeouts fire, as behind a dropped route. Connections open when the
	// blackhole starts go silent too; leaving Blackhole closes them (they
	// lost bytes mid-stream).
	Blackhole
	// Drop closes every open connection and every new one at once, as a
	// peer that resets connections.
	Drop
	// Delay forwards every chunk after the proxy's delay.
	Delay
)

// String names the mode.
func (m Mode) String() string {
	switch m {
	case Pass:
		return "pass"
	case Blackhole:
		return "blackhole"
	case Drop:
		return "drop"
	case Delay:
		return "delay"
	default:
		return fmt.Sprintf("Mode(%d)", int(m))
	}
}

// Proxy is a fault-injecting TCP proxy on loopback: it forwards every
// connection made to Addr to a fixed target, subject to its Mode. It is
// safe for concurrent use.
//
// Goroutines: one accept loop (stopped by Close) and two copiers per
// forwarded connection (stopped when either side closes, by a mode
// change that severs the link, or by Close).
type Proxy struct {
	lis    net.Listener
	target string
	wg     sync.WaitGroup

	mu struct {
		sync.Mutex
		mode   Mode
		delay  time.Duration
		links  map[*link]struct{}
		closed bool
	}
}

// link is one proxied connection: the accepted client side and the dialed
// server side (nil while blackholed from the start).
type link struct {
	client, server net.Conn
	holed          bool // guarded by Proxy.mu: silenced by a blackhole
	once           sync.Once
}

func (l *link) close() {
	l.once.Do(func() {
		_ = l.client.Close() // severing: errors are irrelevant
		if l.server != nil {
			_ = l.server.Close()
		}
	})
}

// NewProxy listens on a free loopback port and forwards to target.
func NewProxy(target string) (*Proxy, error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("chaos: proxy listen: %w", err)
	}
	p := &Proxy{lis: lis, target: target}
	p.mu.links = map[*link]struct{}{}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr is the address to dial instead of the target.
func (p *Proxy) Addr() string { return p.lis.Addr().String() }

// Target is the address the proxy forwards to.
func (p *Proxy) Target() string { return p.target }

// Mode returns the current mode.
func (p *Proxy) Mode() Mode {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mu.mode
}

// Set changes the mode (delay is used by Delay only). Open connections
// follow at once: Blackhole silences them, Drop closes them, and leaving
// Blackhole closes the ones it silenced.
func (p *Proxy) Set(mode Mode, delay time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.mu.mode, p.mu.delay = mode, delay
	for l := range p.mu.links {
		switch {
		case mode == Drop, mode != Blackhole && l.holed:
			l.close()
			delete(p.mu.links, l)
		case mode == Blackhole:
			l.holed = true
		}
	}
}

// Close stops accepting, closes every connection and waits for the
// proxy's goroutines.
func (p *Proxy) Close() error {
	p.mu.Lock()
	p.mu.closed = true
	for l := range p.mu.links {
		l.close()
	}
	p.mu.links = nil
	p.mu.Unlock()
	err := p.lis.Close()
	p.wg.Wait()
	if err != nil {
		return fmt.Errorf("chaos: proxy close: %w", err)
	}
	return nil
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.lis.Accept()
		if err != nil {
			return // closed
		}
		p.mu.Lock()
		mode, closed := p.mu.mode, p.mu.closed
		p.mu.Unlock()
		switch {
		case closed || mode == Drop:
			_ = c.Close() // refused
			continue
		case mode == Blackhole:
			p.track(&link{client: c, holed: true}, false)
			continue
		}
		p.wg.Add(1)
		go p.dial(c)
	}
}

// dial connects to the target for the accepted connection c and starts
// forwarding.
func (p *Proxy) dial(c net.Conn) {
	defer p.wg.Done()
	s, err := net.DialTimeout("tcp", p.target, 2*time.Second)
	if err != nil {
		_ = c.Close() // target down: the client sees a reset
		return
	}
	p.track(&link{client: c, server: s}, true)
}

// track registers l and starts its copiers (forward: both directions;
// otherwise a sink that discards what the client sends).
func (p *Proxy) track(l *link, forward bool) {
	p.mu.Lock()
	if p.mu.closed {
		p.mu.Unlock()
		l.close()
		return
	}
	switch {
	case forward && p.mu.mode == Drop: // the mode changed while dialing
		p.mu.Unlock()
		l.close()
		return
	case forward && p.mu.mode == Blackhole:
		l.holed = true
	}
	p.mu.links[l] = struct{}{}
	p.mu.Unlock()
	if !forward {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			_, _ = io.Copy(io.Discard, l.client) // until severed
			p.forget(l)
		}()
		return
	}
	p.wg.Add(2)
	go p.copy(l, l.server, l.client)
	go p.copy(l, l.client, l.server)
}

func (p *Proxy) forget(l *link) {
	l.close()
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.mu.links, l)
}

// copy forwards src to dst chunk by chunk, discarding while the link is
// blackholed and waiting the delay first in Delay mode.
func (p *Proxy) copy(l *link, dst, src net.Conn) {
	defer p.wg.Done()
	defer p.forget(l)
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			holed, mode, delay := l.holed, p.mu.mode, p.mu.delay
			p.mu.Unlock()
			if holed {
				continue
			}
			if mode == Delay && delay > 0 {
				t := time.NewTimer(delay)
				<-t.C
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return // EOF or severed: close both sides
		}
	}
}
