package coordinator

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/ringkv/ringkv/consensus"
	"github.com/ringkv/ringkv/proto/kvpb"
)

// fuzzPaths are the HTTP API's endpoints with the method each takes; a
// fuzz input picks one by its first byte.
var fuzzPaths = []struct{ method, path string }{
	{http.MethodPost, "/api/set"}, {http.MethodGet, "/api/get"}, {http.MethodGet, "/api/list"},
	{http.MethodDelete, "/api/delete"}, {http.MethodPost, "/api/cas"}, {http.MethodPost, "/api/expire"},
	{http.MethodPost, "/api/persist"}, {http.MethodPost, "/api/txn"},
}

// FuzzHTTPAPI sends arbitrary query strings and bodies to every endpoint of
// the client HTTP API over three in-memory replicas: never a panic, never a
// 500, always a JSON body, and a 4xx always says why in "error".
func FuzzHTTPAPI(f *testing.F) {
	tc := newTestCluster(f, func(c *Config) { c.MaxValueBytes = 1 << 10; c.MaxKeyBytes = 64 })
	h := HTTPHandler(tc.coords["n1"])
	seeds := []struct {
		ep          byte
		query, body string
	}{
		{0, "", `{"key":"user:1001","value":"John Doe"}`},
		{0, "consistency=all", `{"key":"a","value":"","ttl":"30s"}`},
		{0, "", `{"key":"b","value":"x","consistency":"one","ttl":1.5}`},
		{0, "ttl=-1", `{"key":"b","value":"x"}`},
		{1, "key=user:1001&consistency=one", ""},
		{2, "prefix=user:&limit=1", ""},
		{3, "key=a", ""},
		{4, "", `{"key":"k","expected":"old","value":"new"}`},
		{4, "", `{"key":"k","value":"new","consistency":"quorum"}`},
		{5, "", `{"key":"a","ttl":"1m"}`},
		{6, "", `{"key":"a"}`},
		{7, "", `{"compare":[{"key":"a","value":"x"}],"success":[{"op":"set","key":"a","value":"y"}]}`},
		{7, "", `{"compare":[{"key":"a","version":"12"}],"failure":[{"op":"get","key":"a"}]}`},
	}
	for _, s := range seeds {
		f.Add(s.ep, s.query, []byte(s.body))
	}
	f.Fuzz(func(t *testing.T, ep byte, query string, body []byte) {
		p := fuzzPaths[int(ep)%len(fuzzPaths)]
		req := httptest.NewRequest(p.method, "/", bytes.NewReader(body))
		req.URL.Path, req.URL.RawQuery = p.path, query
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code >= 500 && rec.Code != http.StatusServiceUnavailable {
			t.Fatalf("%s %s?%s %q: %d %s", p.method, p.path, query, body, rec.Code, rec.Body)
		}
		var out map[string]any
		if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
			t.Fatalf("%s %s?%s %q: %d, body %q is not a JSON object: %v", p.method, p.path, query, body, rec.Code, rec.Body, err)
		}
		if rec.Code >= 400 && rec.Code != http.StatusNotFound {
			if msg, ok := out["error"].(string); !ok || msg == "" {
				t.Fatalf("%s %s?%s %q: %d without an error: %s", p.method, p.path, query, body, rec.Code, rec.Body)
			}
		}
	})
}

// FuzzDecodeTxnJSON: /api/txn's and `ringkv txn`'s decoder either refuses
// with ErrInvalidArgument or yields a request.
func FuzzDecodeTxnJSON(f *testing.F) {
	for _, s := range []string{
		`{"compare":[{"key":"a","value":"x"}],"success":[{"op":"set","key":"a","value":"y","ttl":"10s"}],"failure":[{"op":"get","key":"a"}]}`,
		`{"compare":[{"key":"a","absent":true}],"success":[{"op":"delete","key":"a"}],"consistency":"linearizable"}`,
		`{"compare":[{"key":"a","version":"123"},{"key":"b","ttl_at_least":5}]}`,
		`{"compare":[{"key":"a"}]}`, `{} {}`, `[]`, ``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		req, err := DecodeTxnJSON(bytes.NewReader(b))
		if err != nil {
			if !errors.Is(err, ErrInvalidArgument) {
				t.Fatalf("%q: error %v does not wrap ErrInvalidArgument", b, err)
			}
			return
		}
		if req == nil {
			t.Fatalf("%q: nil request without an error", b)
		}
	})
}

// FuzzLinTxnWire is the Linearizable service's Txn as its server decodes
// it: protobuf bytes, txnFromWire, then consensus.ValidateTxn. A request
// either is refused with ErrInvalidTxn or survives txnToWire/txnFromWire
// unchanged.
func FuzzLinTxnWire(f *testing.F) {
	seed := func(t *consensus.Txn) {
		b, err := proto.Marshal(txnToWire(3, t))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	seed(&consensus.Txn{Compares: []consensus.Compare{{Kind: consensus.CompareValue, Key: []byte("a"), Value: []byte("x")}},
		Success: []consensus.Op{{Kind: consensus.OpSet, Key: []byte("a"), Value: []byte("y")}},
		Failure: []consensus.Op{{Kind: consensus.OpGet, Key: []byte("a")}}})
	seed(&consensus.Txn{Compares: []consensus.Compare{{Kind: consensus.CompareTTLAtLeast, Key: []byte("b"), TTL: 5}, {Kind: consensus.CompareVersion, Key: []byte("c"), Version: 9}}})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		var req kvpb.LinTxnRequest
		if proto.Unmarshal(b, &req) != nil {
			return
		}
		txn := txnFromWire(&req)
		if err := consensus.ValidateTxn(txn); err != nil {
			if !errors.Is(err, consensus.ErrInvalidTxn) {
				t.Fatalf("error %v does not wrap ErrInvalidTxn", err)
			}
			return
		}
		again := txnFromWire(txnToWire(req.GetPartition(), txn))
		if !txnEqual(txn, again) {
			t.Fatalf("round trip changed %+v to %+v", txn, again)
		}
	})
}

func txnEqual(a, b *consensus.Txn) bool {
	if len(a.Compares) != len(b.Compares) || len(a.Success) != len(b.Success) || len(a.Failure) != len(b.Failure) {
		return false
	}
	for i, c := range a.Compares {
		d := b.Compares[i]
		if c.Kind != d.Kind || !bytes.Equal(c.Key, d.Key) || !bytes.Equal(c.Value, d.Value) || c.Version != d.Version || c.TTL != d.TTL {
			return false
		}
	}
	ops := func(x, y []consensus.Op) bool {
		for i, o := range x {
			p := y[i]
			if o.Kind != p.Kind || !bytes.Equal(o.Key, p.Key) || !bytes.Equal(o.Value, p.Value) || !o.ExpiresAt.Equal(p.ExpiresAt) {
				return false
			}
		}
		return true
	}
	return ops(a.Success, b.Success) && ops(a.Failure, b.Failure)
}

// FuzzRecordWire: a record as every service decodes it from the wire
// (recordFromWire) re-encodes to the same record.
func FuzzRecordWire(f *testing.F) {
	for _, w := range []*kvpb.Record{
		{Value: []byte("v"), Timestamp: 7, NodeId: "n1"},
		{Timestamp: 9, NodeId: "n2", Tombstone: true, ExpiresAtUnixNanos: 1 << 60},
	} {
		b, err := proto.Marshal(w)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var w kvpb.Record
		if proto.Unmarshal(b, &w) != nil {
			return
		}
		r := recordFromWire(&w)
		back := recordFromWire(recordToWire(r))
		if !bytes.Equal(r.AppendBinary(nil), back.AppendBinary(nil)) {
			t.Fatalf("round trip changed %+v to %+v", r, back)
		}
	})
}
