package gossip

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"strconv"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ringkv/ringkv/ring"
)

// Profile selects memberlist's timer profile.
type Profile int

const (
	// LAN uses memberlist.DefaultLANConfig.
	LAN Profile = iota
	// Local uses memberlist.DefaultLocalConfig: fast timers for loopback tests.
	Local
)

// String returns "lan" or "local".
func (p Profile) String() string {
	switch p {
	case LAN:
		return "lan"
	case Local:
		return "local"
	default:
		return fmt.Sprintf("Profile(%d)", int(p))
	}
}

// Config configures a Gossip. Open copies it, fills zero fields and validates
// it; it does not change afterwards.
type Config struct {
	// NodeID is this node's unique, stable ID; it is the memberlist Name and
	// the ring member ID. Required.
	NodeID string
	// Zone is advertised in metadata and recorded in the ring when the
	// claimant joins this node; placement prefers distinct zones. Optional.
	Zone string
	// BindAddr is the gossip "host:port" (TCP and UDP). Port 0 picks a free
	// port; Gossip.Addr reports it. Default "0.0.0.0:7946".
	BindAddr string
	// AdvertiseAddr is the gossip "host:port" other members reach this
	// node by, when it is not BindAddr: a BindAddr on 0.0.0.0 (a
	// container's), or an address translated on the way. The host is an
	// IP or a DNS name (resolved once, at Open: memberlist advertises an
	// IP); port 0 means BindAddr's port. Default empty: BindAddr, or on
	// 0.0.0.0 memberlist's pick of this host's private IP.
	AdvertiseAddr string
	// RPCAddr is the drpc "host:port" advertised in metadata.
	RPCAddr string
	// HTTPAddr is the HTTP "host:port" advertised in metadata.
	HTTPAddr string
	// Seeds are gossip addresses to join. Joining retries in the background
	// until one answers or Close. Empty means: bootstrap a new cluster if no
	// ring is persisted. The slice is copied by Open.
	Seeds []string
	// DataDir holds ring.state. Required; created if missing.
	DataDir string
	// Ring is used only when bootstrapping a new cluster; afterwards the
	// persisted / gossiped ring carries its own configuration.
	Ring ring.Config
	// Profile selects memberlist's timers. Default LAN.
	Profile Profile
	// ClaimInterval is how often the claimant looks for nodes to join.
	// Shorter joins new nodes faster at the cost of a little CPU. Default 1s
	// (Local: 200ms).
	ClaimInterval time.Duration
	// KeyringFile is the path of the gossip keyring: one standard base64
	// key (16, 24 or 32 bytes: AES-128, -192 or -256) per line, blank lines
	// and '#' comments ignored (keyring.go). The first key encrypts; every
	// key is tried when decrypting. With a keyring, all gossip (UDP and
	// TCP, ring pushes included) is encrypted and authenticated with
	// AES-GCM, and a node without the key can neither join nor be joined.
	// Open reads it; ReloadKeyring reads it again. Default empty: no
	// encryption. Turning encryption on or off takes every node restarted.
	KeyringFile string
	// Starting is advertised from the first gossip message on, until
	// SetStarting(false): the embedding node says when it is ready.
	// Default false.
	Starting bool
	// Wire is the range of wire protocol versions this node speaks,
	// advertised in its metadata; a peer whose range does not overlap it
	// is refused (wire.go). Zero: CurrentWire. Tests set others.
	Wire WireRange
	// Logger receives this package's and memberlist's logs. Nil discards.
	Logger *slog.Logger
}

// DefaultConfig returns a fresh LAN configuration. NodeID and DataDir must
// still be set.
func DefaultConfig() Config {
	return Config{
		BindAddr:      "0.0.0.0:7946",
		Ring:          ring.DefaultConfig(),
		Profile:       LAN,
		ClaimInterval: time.Second,
	}
}

// LocalConfig returns a fresh configuration for loopback tests: Local
// profile, a free port on 127.0.0.1 and a 200ms ClaimInterval. NodeID and
// DataDir must still be set.
func LocalConfig() Config {
	c := DefaultConfig()
	c.BindAddr = "127.0.0.1:0"
	c.Profile = Local
	c.ClaimInterval = 200 * time.Millisecond
	return c
}

// Validate reports every problem with c, each marked with ErrInvalidConfig,
// joined with errors.Join. Zero fields that Open fills (ClaimInterval,
// Logger) are valid.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrInvalidConfig}, args...)...))
	}
	if c.NodeID == "" {
		bad("NodeID is required")
	}
	if c.DataDir == "" {
		bad("DataDir is required")
	}
	if _, _, err := splitBindAddr(c.BindAddr); err != nil {
		bad("BindAddr %q: %v", c.BindAddr, err)
	}
	if c.AdvertiseAddr != "" {
		if h, _, err := splitBindAddr(c.AdvertiseAddr); err != nil || h == "0.0.0.0" {
			bad("AdvertiseAddr %q: want the host:port members reach this node by", c.AdvertiseAddr)
		}
	}
	for i, s := range c.Seeds {
		if s == "" {
			bad("Seeds[%d] is empty", i)
		}
	}
	if c.Profile != LAN && c.Profile != Local {
		bad("unknown Profile %d", int(c.Profile))
	}
	if c.ClaimInterval < 0 {
		bad("ClaimInterval %s is negative", c.ClaimInterval)
	}
	if c.Wire != (WireRange{}) && !c.Wire.valid() {
		bad("Wire %d..%d is not a range of positive versions", c.Wire.Min, c.Wire.Max)
	}
	md := c.meta()
	md.RingVersion = math.MaxUint64 // room for any version it will advertise
	md.Draining, md.Starting = true, true
	if b, err := encodeMeta(md); err != nil {
		bad("metadata: %v", err)
	} else if len(b) > memberlist.MetaMaxSize {
		bad("metadata (Zone, RPCAddr, HTTPAddr) is %d bytes, limit %d", len(b), memberlist.MetaMaxSize)
	}
	if len(c.Seeds) == 0 {
		if _, err := ring.New(c.Ring); err != nil {
			bad("Ring: %v", err)
		}
	}
	return errors.Join(errs...)
}

// withDefaults returns a copy of c with zero fields filled.
func (c Config) withDefaults() Config {
	c.Seeds = append([]string(nil), c.Seeds...)
	if c.ClaimInterval == 0 {
		c.ClaimInterval = time.Second
		if c.Profile == Local {
			c.ClaimInterval = 200 * time.Millisecond
		}
	}
	if c.Wire == (WireRange{}) {
		c.Wire = CurrentWire()
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

func (c Config) meta() meta {
	w := c.Wire
	if w == (WireRange{}) {
		w = CurrentWire()
	}
	return meta{Version: metaVersion, Zone: c.Zone, RPCAddr: c.RPCAddr, HTTPAddr: c.HTTPAddr, Wire: [2]int{w.Min, w.Max}, Starting: c.Starting}
}

// memberlistConfig builds memberlist's configuration from c. keyring, if
// not nil, encrypts all gossip and refuses any message not encrypted with
// one of its keys.
func (c Config) memberlistConfig(d *delegate, logger *slog.Logger, keyring *memberlist.Keyring) (*memberlist.Config, error) {
	host, port, err := splitBindAddr(c.BindAddr)
	if err != nil {
		return nil, err
	}
	var mc *memberlist.Config
	switch c.Profile {
	case Local:
		mc = memberlist.DefaultLocalConfig()
	default:
		mc = memberlist.DefaultLANConfig()
	}
	mc.Name = c.NodeID
	mc.BindAddr = host
	mc.BindPort = port
	mc.AdvertisePort = port
	if c.AdvertiseAddr != "" {
		ahost, aport, err := splitBindAddr(c.AdvertiseAddr)
		if err != nil {
			return nil, err
		}
		if mc.AdvertiseAddr, err = resolveIP(ahost); err != nil {
			return nil, err
		}
		if aport != 0 {
			mc.AdvertisePort = aport
		}
	}
	mc.Delegate = d
	mc.Events = d
	mc.Alive = d
	mc.Merge = d
	mc.Logger = newStdLogger(logger)
	if keyring != nil {
		mc.Keyring = keyring
		mc.GossipVerifyIncoming = true
		mc.GossipVerifyOutgoing = true
	}
	return mc, nil
}

// resolveIP returns host if it is an IP, else the first IPv4 address
// (or, with none, the first address) it resolves to: memberlist
// advertises an IP.
func resolveIP(host string) (string, error) {
	if net.ParseIP(host) != nil {
		return host, nil
	}
	ips, err := net.LookupIP(host)
	if err != nil {
		return "", fmt.Errorf("advertise address %q: %w", host, err)
	}
	for _, ip := range ips {
		if ip.To4() != nil {
			return ip.String(), nil
		}
	}
	if len(ips) == 0 {
		return "", fmt.Errorf("advertise address %q resolves to no address", host)
	}
	return ips[0].String(), nil
}

func splitBindAddr(addr string) (host string, port int, err error) {
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("bind address %q: %w", addr, err)
	}
	if h == "" {
		h = "0.0.0.0"
	}
	n, err := strconv.ParseUint(p, 10, 16)
	if err != nil {
		return "", 0, fmt.Errorf("port %q: %w", p, err)
	}
	return h, int(n), nil
}

// Deps are the dependencies Open needs.
type Deps struct {
	// Registerer receives this package's metrics. Nil uses a private
	// registry.
	Registerer prometheus.Registerer
	// Vet, if set, is asked before a node absent from the ring is joined
	// (by the claimant, or by an admit): an error keeps it out. A secure
	// node checks that the candidate's RPC address answers with a node
	// certificate of this cluster naming it, so that a node which shares
	// the gossip key but not the CA is never given partitions. It may
	// block (it runs on the deciding goroutine, never on run).
	Vet func(ctx context.Context, id, rpcAddr string) error
}
