package chaos

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"
)

// Net is the peer network of a cluster: one Proxy per ordered pair of
// nodes (from, to), through which from dials to's drpc address. Cutting
// both directions of a pair cuts every drpc byte between the two nodes
// (replica RPCs, raft, linearizable forwarding); gossip and client
// traffic do not pass through it. It is safe for concurrent use.
type Net struct {
	ids     []string
	proxies map[[2]string]*Proxy

	mu    sync.Mutex
	state string // description of the current topology, "healed" when none
}

// NewNet starts a proxy for every ordered pair of ids; rpc maps each id
// to its real drpc address. No proxy listens on an address in reserved
// (the nodes' own addresses, chosen but maybe not bound yet).
func NewNet(ids []string, rpc map[string]string, reserved ...string) (*Net, error) {
	n := &Net{ids: slices.Clone(ids), proxies: map[[2]string]*Proxy{}, state: "healed"}
	for _, from := range ids {
		for _, to := range ids {
			if from == to {
				continue
			}
			p, err := newProxyAvoiding(rpc[to], reserved)
			if err != nil {
				return nil, errors.Join(err, n.Close())
			}
			n.proxies[[2]string{from, to}] = p
		}
	}
	return n, nil
}

// Overrides returns the dial overrides node from must use: peer id ->
// proxy address, in the form of `ringkv serve --chaos-dial-overrides`.
func (n *Net) Overrides(from string) string {
	var parts []string
	for _, to := range n.ids {
		if p, ok := n.proxies[[2]string{from, to}]; ok {
			parts = append(parts, to+"="+p.Addr())
		}
	}
	return strings.Join(parts, ",")
}

// Close closes every proxy.
func (n *Net) Close() error {
	var errs []error
	for _, p := range n.proxies {
		errs = append(errs, p.Close())
	}
	return errors.Join(errs...)
}

// State describes the current topology.
func (n *Net) State() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.state
}

// Apply sets every link: links for which reach(from, to) is false (in
// either direction) get mode (Blackhole, Drop or Delay, with delay),
// the others Pass. desc names the topology for logs.
func (n *Net) Apply(desc string, mode Mode, delay time.Duration, reach func(a, b string) bool) {
	n.mu.Lock()
	n.state = desc
	n.mu.Unlock()
	for pair, p := range n.proxies {
		if reach(pair[0], pair[1]) && reach(pair[1], pair[0]) {
			p.Set(Pass, 0)
		} else {
			p.Set(mode, delay)
		}
	}
}

// Heal lets every link pass.
func (n *Net) Heal() {
	n.Apply("healed", Pass, 0, func(string, string) bool { return true })
}

// Partition cuts every link between different groups; nodes in no group
// are cut from everyone.
func (n *Net) Partition(mode Mode, groups ...[]string) {
	group := map[string]int{}
	var desc []string
	for i, g := range groups {
		for _, id := range g {
			group[id] = i + 1
		}
		desc = append(desc, "["+strings.Join(g, " ")+"]")
	}
	n.Apply("partition "+strings.Join(desc, " | ")+" ("+mode.String()+")", mode, 0, func(a, b string) bool {
		return group[a] != 0 && group[a] == group[b]
	})
}

// Isolate cuts id from every other node.
func (n *Net) Isolate(mode Mode, id string) {
	n.Partition(mode, []string{id}, without(n.ids, id))
}

// Split cuts a random minority from the majority of nodes.
func (n *Net) Split(rng *rand.Rand, mode Mode, nodes []string) {
	s := shuffled(rng, nodes)
	k := (len(s) - 1) / 2 // the minority's size
	if k == 0 {
		k = 1
	}
	n.Partition(mode, s[:k], s[k:])
}

// Bridge cuts the nodes into two halves that cannot reach each other and
// one bridge node that reaches both (Jepsen's bridge).
func (n *Net) Bridge(rng *rand.Rand, mode Mode, nodes []string) error {
	if len(nodes) < 3 {
		return fmt.Errorf("chaos: bridge needs 3 nodes, have %d", len(nodes))
	}
	s := shuffled(rng, nodes)
	mid := len(s) / 2
	bridge := s[mid]
	left, right := s[:mid], s[mid+1:]
	side := map[string]int{}
	for _, id := range left {
		side[id] = 1
	}
	for _, id := range right {
		side[id] = 2
	}
	desc := fmt.Sprintf("bridge [%s] <- %s -> [%s] (%s)", strings.Join(left, " "), bridge, strings.Join(right, " "), mode)
	n.Apply(desc, mode, 0, func(a, b string) bool {
		if !slices.Contains(nodes, a) || !slices.Contains(nodes, b) {
			return false
		}
		return side[a] == 0 || side[b] == 0 || side[a] == side[b]
	})
	return nil
}

// MajoritiesRing arranges the nodes in a random ring where each sees
// itself and its nearest neighbours, a majority in all, but no two nodes
// see the same majority (Jepsen's majorities-ring).
func (n *Net) MajoritiesRing(rng *rand.Rand, mode Mode, nodes []string) {
	s := shuffled(rng, nodes)
	pos := map[string]int{}
	for i, id := range s {
		pos[id] = i
	}
	k := len(s)
	r := (k/2 + 1) / 2 // neighbours seen on each side: 1 + 2r is a majority
	n.Apply("majorities ring ["+strings.Join(s, " ")+"] ("+mode.String()+")", mode, 0, func(a, b string) bool {
		pa, oka := pos[a]
		pb, okb := pos[b]
		if !oka || !okb {
			return false
		}
		d := (pa - pb + k) % k
		d = min(d, k-d)
		return d <= r
	})
}

// Slow delays every link of id by delay (a slow network, not a cut).
func (n *Net) Slow(id string, delay time.Duration) {
	n.Apply(fmt.Sprintf("slow %s (+%s)", id, delay), Delay, delay, func(a, b string) bool {
		return a != id && b != id
	})
}

// newProxyAvoiding is NewProxy on an address not in reserved.
func newProxyAvoiding(target string, reserved []string) (*Proxy, error) {
	var taken []*Proxy
	defer func() {
		for _, p := range taken {
			_ = p.Close() // held only to skip its port
		}
	}()
	for range 100 {
		p, err := NewProxy(target)
		if err != nil {
			return nil, err
		}
		if !slices.Contains(reserved, p.Addr()) {
			return p, nil
		}
		taken = append(taken, p)
	}
	return nil, errors.New("chaos: no free proxy port outside the reserved ones")
}

func without(ids []string, id string) []string {
	var out []string
	for _, x := range ids {
		if x != id {
			out = append(out, x)
		}
	}
	return out
}

func shuffled(rng *rand.Rand, ids []string) []string {
	s := slices.Clone(ids)
	rng.Shuffle(len(s), func(i, j int) { s[i], s[j] = s[j], s[i] })
	return s
}
