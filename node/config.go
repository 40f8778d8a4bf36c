package node

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/ringkv/ringkv/antientropy"
	"github.com/ringkv/ringkv/auth"
	"github.com/ringkv/ringkv/consensus"
	"github.com/ringkv/ringkv/coordinator"
	"github.com/ringkv/ringkv/replica"
	"github.com/ringkv/ringkv/ring"
	"github.com/ringkv/ringkv/ring/gossip"
)

// Config describes one node. Build it with DefaultConfig.
type Config struct {
	// ID is the node's unique, stable name in the cluster. Required.
	ID string
	// Zone is the failure domain (rack, availability zone); replicas of a
	// partition prefer distinct zones. Optional.
	Zone string
	// DataDir holds the replica store and the persisted ring. Required.
	DataDir string
	// HTTPAddr, RPCAddr and GossipAddr are listen addresses (host:port; port
	// 0 picks a free port). They are also the addresses advertised to peers,
	// so the host must be reachable by them (127.0.0.1 for loopback).
	HTTPAddr   string
	RPCAddr    string
	GossipAddr string
	// RESPAddr is the Redis protocol's listen address (package resp);
	// empty: not served. TLS on a secure node, like the other ports.
	RESPAddr string
	// Advertise is the host (an IP or a DNS name) that peers and clients
	// reach this node by, when the listen addresses' host is not: a node
	// listening on 0.0.0.0 (in a container, or on every interface) must
	// set it. Each advertised address keeps its listener's port. Default
	// empty: the listen addresses as bound.
	Advertise string
	// AdvertiseHTTPAddr, AdvertiseRPCAddr and AdvertiseGossipAddr replace
	// one advertised address whole ("host:port"), for a port translated
	// on the way (NAT, a published container port). Default empty:
	// Advertise's host with the listener's port.
	AdvertiseHTTPAddr   string
	AdvertiseRPCAddr    string
	AdvertiseGossipAddr string
	// Join lists gossip addresses of existing members. Empty means this node
	// founds a new cluster (unless DataDir already holds a ring).
	Join []string
	// Ring is the partition count and replication factor of a new cluster;
	// ignored when joining one.
	Ring ring.Config
	// GossipProfile selects memberlist timers: gossip.LAN, or gossip.Local
	// for fast loopback tests.
	GossipProfile gossip.Profile
	// GossipKeyringFile is the gossip keyring (gossip.Config.KeyringFile):
	// one base64 key per line, the first encrypts. Empty: gossip is not
	// encrypted. ReloadGossipKeyring reads it again.
	GossipKeyringFile string
	// Replica, Coordinator and RPC tune those components; their Dir, NodeID
	// and Logger fields are filled in by the node.
	Replica     replica.Config
	Coordinator coordinator.Config
	RPC         coordinator.RPCConfig
	// Consensus tunes the Raft groups; NodeID, DataDir and Logger are
	// filled in by the node.
	Consensus consensus.Config
	// AntiEntropy tunes Merkle-tree exchanges, the scrubber and tombstone
	// collection; NodeID and Logger are filled in by the node.
	AntiEntropy antientropy.Config
	// MemoryBudgetBytes sizes every memory consumer that has a setting
	// from one number, each a fixed fraction of it (SizeForMemory):
	// Badger's memtables, block and index caches, the version cache, the
	// Raft groups' log caches and the admission byte budgets. Open fills
	// each of those fields that is zero or holds its default; one set to
	// anything else keeps its value. The budget bounds those consumers,
	// not the process: the Go runtime's garbage, goroutines, buffers and
	// memory-mapped files come on top (docs/OPERATIONS.md, "Memory").
	// Default 0: no budget, the components' defaults (the sizes of a
	// 1 GiB budget). At least MinMemoryBudgetBytes when set.
	MemoryBudgetBytes int64
	// Logger receives every component's logs; nil discards.
	Logger *slog.Logger
	// DiskStallTimeout is how long an fsync may run before the node
	// counts its disk unhealthy: not ready, leadership handed away
	// (disk.go). It should be below the Raft groups' failover time, so a
	// stalled leader hands over before its writes time out. Default 1s;
	// negative: never.
	DiskStallTimeout time.Duration

	// PeerDialOverrides is a test-only hook for the chaos harness
	// (internal/chaos): peer node id -> the address this node dials to
	// reach that peer's drpc service (replica RPCs, raft transport,
	// linearizable forwarding) instead of the RPC address the peer
	// advertises through gossip. The harness points it at fault-injecting
	// proxies. Gossip and client traffic are not affected. Empty: off.
	PeerDialOverrides map[string]string
	// ChaosHooks is test-only: it enables POST /chaos/clock-offset, which
	// shifts this node's physical clock (the HLC's wall-clock source) by
	// the given offset, so the chaos harness can skew one node's clock
	// while it runs. Never enable it in production. Default false.
	ChaosHooks bool
	// ChaosClockOffset is test-only and needs ChaosHooks: the offset the
	// node's physical clock starts with, as if POST /chaos/clock-offset had
	// been called before the node did anything, so a test can restart a
	// node with its clock already skewed (internal/testcluster,
	// TestExpiryUnderFaults). Default 0.
	ChaosClockOffset time.Duration

	// CertsDir holds this node's certificates (ca.crt, node.crt,
	// node.key; see internal/pki and docs/SECURITY.md). Set, the node
	// serves TLS on both ports, dials its peers over mutual TLS and
	// authenticates clients; empty, it is insecure (plaintext, no
	// authentication). Default empty.
	CertsDir string
	// MetricsOpen serves /metrics and /api/stats to anyone on a secure
	// node; otherwise they need the metrics permission. Default false.
	MetricsOpen bool
	// Auth tunes users, roles and tokens on a secure node (its Logger is
	// filled in by the node).
	Auth auth.Config
}

// DefaultConfig returns a fresh Config with defaults for everything but ID,
// DataDir and the addresses.
func DefaultConfig() Config {
	return Config{
		Ring:        ring.DefaultConfig(),
		Replica:     replica.DefaultConfig(),
		Coordinator: coordinator.DefaultConfig(),
		RPC:         coordinator.DefaultRPCConfig(),
		Consensus:   consensus.DefaultConfig(),
		AntiEntropy: antientropy.DefaultConfig(),
		Auth:        auth.DefaultConfig(),

		DiskStallTimeout: DefaultDiskStallTimeout,
	}
}

// DefaultDiskStallTimeout is Config.DiskStallTimeout's default.
const DefaultDiskStallTimeout = time.Second

// Validate reports every problem with c, joined.
func (c Config) Validate() error {
	var errs []error
	if c.ID == "" {
		errs = append(errs, errors.New("node: ID is required"))
	}
	if c.DataDir == "" {
		errs = append(errs, errors.New("node: DataDir is required"))
	}
	for name, addr := range map[string]string{"HTTPAddr": c.HTTPAddr, "RPCAddr": c.RPCAddr, "GossipAddr": c.GossipAddr} {
		if addr == "" {
			errs = append(errs, fmt.Errorf("node: %s is required", name))
		}
	}
	errs = append(errs, c.validateAdvertise()...)
	if c.MemoryBudgetBytes != 0 && c.MemoryBudgetBytes < MinMemoryBudgetBytes {
		errs = append(errs, fmt.Errorf("node: MemoryBudgetBytes %d is below the minimum %d (64 MiB)", c.MemoryBudgetBytes, MinMemoryBudgetBytes))
	}
	if c.ChaosClockOffset != 0 && !c.ChaosHooks {
		errs = append(errs, errors.New("node: ChaosClockOffset is test-only and needs ChaosHooks"))
	}
	if err := c.Ring.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// validateAdvertise checks that every address the node will advertise is
// one a peer can dial: a listener on an unspecified host (0.0.0.0, ::)
// needs Advertise or its own advertised address.
func (c Config) validateAdvertise() []error {
	var errs []error
	if c.Advertise != "" {
		if ip := net.ParseIP(c.Advertise); strings.Contains(c.Advertise, ":") && ip == nil || ip != nil && ip.IsUnspecified() {
			errs = append(errs, fmt.Errorf("node: Advertise %q: want the host (IP or DNS name, no port) peers reach this node by", c.Advertise))
		}
	}
	for _, a := range []struct{ name, listen, override string }{
		{"HTTPAddr", c.HTTPAddr, c.AdvertiseHTTPAddr},
		{"RPCAddr", c.RPCAddr, c.AdvertiseRPCAddr},
		{"GossipAddr", c.GossipAddr, c.AdvertiseGossipAddr},
	} {
		if a.override != "" {
			if h, _, err := net.SplitHostPort(a.override); err != nil || unspecified(h) {
				errs = append(errs, fmt.Errorf("node: Advertise%s %q: want the host:port peers reach this listener by", a.name, a.override))
			}
			continue
		}
		h, _, err := net.SplitHostPort(a.listen)
		if err == nil && unspecified(h) && c.Advertise == "" {
			errs = append(errs, fmt.Errorf("node: %s %q listens on every interface: set Advertise (serve --advertise HOST) to the host peers reach it by", a.name, a.listen))
		}
	}
	return errs
}

// unspecified reports whether host names no particular interface.
func unspecified(host string) bool {
	if host == "" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsUnspecified()
}

// advertised is the address peers reach a listener bound at bound by:
// override if set, else Advertise's host with bound's port, else bound.
func (c Config) advertised(bound net.Addr, override string) string {
	if override != "" {
		return override
	}
	if c.Advertise == "" {
		return bound.String()
	}
	_, port, err := net.SplitHostPort(bound.String())
	if err != nil {
		return bound.String()
	}
	return net.JoinHostPort(c.Advertise, port)
}
