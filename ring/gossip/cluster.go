package gossip

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// A cluster id names one cluster: 32 hex digits drawn at random by the
// node that founds the cluster (bootstrap), persisted in clusterIDFile
// in Config.DataDir and advertised in every node's metadata ("cluster").
// A node that joins without one adopts the id its ring's members
// advertise, once it holds their ring, and persists it. From then on it
// refuses (NotifyAlive, NotifyMerge) every peer advertising another id:
// two clusters pointed at each other by a wrong seed never merge their
// memberships or rings. A node or peer without an id (a cluster founded
// before ids, a node still joining) is let through: the id catches
// mistakes, it is not authentication (that is the gossip keyring and the
// node certificates).
const clusterIDFile = "cluster.id"

// newClusterID returns a fresh random cluster id.
func newClusterID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("cluster id: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// validClusterID reports whether id is 32 lowercase hex digits.
func validClusterID(id string) bool {
	if len(id) != 32 {
		return false
	}
	_, err := hex.DecodeString(id)
	return err == nil && strings.ToLower(id) == id
}

// loadClusterID returns the persisted cluster id, "" when there is none,
// and an error marked ErrCorrupt for a file that holds no valid id.
func loadClusterID(dir string) (string, error) {
	path := filepath.Join(dir, clusterIDFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	id := strings.TrimSpace(string(b))
	if !validClusterID(id) {
		return "", fmt.Errorf("%w: %s holds %q, not a cluster id", ErrCorrupt, path, clip(id))
	}
	return id, nil
}

func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}

// saveClusterID persists id atomically (temp file, fsync, rename, fsync
// dir).
func saveClusterID(dir, id string) error {
	return writeAtomic(dir, clusterIDFile, []byte(id+"\n"))
}

// ForeignClusterError is the ErrForeignCluster a node reports for a peer
// that advertises another cluster id.
type ForeignClusterError struct {
	Peer string
	// PeerCluster is the id the peer advertises; Local this node's.
	PeerCluster, Local string
}

func (e *ForeignClusterError) Error() string {
	return fmt.Sprintf("%v: peer %s belongs to cluster %s, this node to cluster %s: check the seeds (--join) of both", ErrForeignCluster, e.Peer, e.PeerCluster, e.Local)
}

// Is reports whether target is ErrForeignCluster.
func (e *ForeignClusterError) Is(target error) bool { return target == ErrForeignCluster }

// ClusterID returns the id of this node's cluster, "" while it has none
// (see clusterIDFile).
func (g *Gossip) ClusterID() string { return *g.cluster.Load() }

// adoptClusterID gives a node without a cluster id the one its ring's
// alive members advertise (the first found in id order), persists it and
// advertises it. Called by run.
func (g *Gossip) adoptClusterID() {
	if g.ClusterID() != "" {
		return
	}
	r := g.Ring()
	var id, from string
	g.nodes.Lock()
	for name, n := range g.nodes.m {
		if _, inRing := r.Member(name); !inRing || n.liveness == Dead || !n.metaOK || !validClusterID(n.meta.Cluster) {
			continue
		}
		if from == "" || name < from {
			id, from = n.meta.Cluster, name
		}
	}
	g.nodes.Unlock()
	if id == "" {
		return
	}
	if err := saveClusterID(g.cfg.DataDir, id); err != nil {
		g.log.Error("persist the cluster id", "cluster_id", id, "err", err)
		return
	}
	g.cluster.Store(&id)
	if err := g.setMeta(func(md *meta) { md.Cluster = id }); err != nil {
		g.log.Debug("advertise the cluster id", "err", err)
	}
	g.log.Info("adopted the cluster id", "cluster_id", id, "from", from)
}
