package gossip

import (
	"testing"

	"github.com/ringkv/ringkv/ring"
)

// FuzzDecodeMeta: the node metadata every peer advertises through
// memberlist, as this node decodes it. Arbitrary bytes never panic, and
// metadata that decodes re-encodes to metadata that decodes the same.
func FuzzDecodeMeta(f *testing.F) {
	for _, m := range []meta{
		{Version: metaVersion, Zone: "z1", RPCAddr: "127.0.0.1:9001", HTTPAddr: "127.0.0.1:8081", RingVersion: 7, Wire: [2]int{1, 2}},
		{Version: metaVersion, Draining: true, Starting: true},
	} {
		b, err := encodeMeta(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"v":2}`))
	f.Add([]byte(`{"v":1,"wire":[5,1]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeMeta(b)
		if err != nil {
			return
		}
		_ = wireOf(m)
		enc, err := encodeMeta(m)
		if err != nil {
			t.Fatalf("decoded %+v does not encode: %v", m, err)
		}
		back, err := decodeMeta(enc)
		if err != nil || back != m {
			t.Fatalf("round trip changed %+v to %+v (%v)", m, back, err)
		}
	})
}

// FuzzDecodeState: the persisted ring state a node reads at start.
func FuzzDecodeState(f *testing.F) {
	f.Add(encodeState(nil))
	f.Add(encodeState([]byte{1, 2, 3}))
	f.Add([]byte("RING"))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = decodeState(b)
	})
}

// FuzzDecodeRecord: the ring record (ring plus recent change ids) nodes
// exchange and persist.
func FuzzDecodeRecord(f *testing.F) {
	r := statusRing(f, ring.Member{ID: "a"})
	next, err := r.Join(ring.Member{ID: "b"})
	if err != nil {
		f.Fatal(err)
	}
	for _, rec := range []record{{ring: r}, record{ring: r}.with(next, changeID{1, 2, 3})} {
		b, err := rec.encode()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	if enc, err := r.MarshalBinary(); err == nil {
		f.Add(encodeState(enc))
	}
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := decodeRecord(b)
		if err != nil {
			return
		}
		if _, err := r.encode(); err != nil {
			t.Fatalf("decoded record does not encode: %v", err)
		}
	})
}
