package gossip

import (
	"encoding/json"
	"fmt"
)

// metaVersion is the version of the node metadata encoding.
const metaVersion = 1

// meta is what each node advertises in its memberlist node metadata.
type meta struct {
	Version  int    `json:"v"`
	Zone     string `json:"zone,omitempty"`
	RPCAddr  string `json:"rpc,omitempty"`
	HTTPAddr string `json:"http,omitempty"`
	// RingVersion is the version of the ring the node holds; 0 from a
	// node that does not say.
	RingVersion uint64 `json:"rv,omitempty"`
	// Wire is the range of wire protocol versions the node speaks, [min,
	// max]; absent (zero) from nodes older than the field, which speak 1
	// (see wireOf).
	Wire [2]int `json:"wire"`
	// Draining: the node is draining and refuses new client requests;
	// coordinators and clients send them elsewhere.
	Draining bool `json:"drain,omitempty"`
	// Cluster is the id of the node's cluster (cluster.go); absent from
	// nodes older than ids and from a joining node that has none yet.
	Cluster string `json:"cluster,omitempty"`
	// Starting: the node has not been ready since it started (it may
	// not know its peers or its groups' leaders yet); like Draining,
	// send client requests elsewhere meanwhile.
	Starting bool `json:"start,omitempty"`
}

func encodeMeta(m meta) ([]byte, error) {
	b, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encode metadata: %w", err)
	}
	return b, nil
}

// decodeMeta parses node metadata; nodes that are not ringkv nodes (or speak
// a newer encoding) fail and are never joined by the claimant.
func decodeMeta(b []byte) (meta, error) {
	var m meta
	if err := json.Unmarshal(b, &m); err != nil {
		return meta{}, fmt.Errorf("decode node metadata: %w", err)
	}
	if m.Version != metaVersion {
		return meta{}, fmt.Errorf("decode node metadata: unknown version %d", m.Version)
	}
	return m, nil
}
