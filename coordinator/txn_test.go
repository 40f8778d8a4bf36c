package coordinator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ringkv/ringkv/consensus"
	"github.com/ringkv/ringkv/proto/kvpb"
)

func (s *serverLin) LinTxn(ctx context.Context, _ string, p uint32, t *consensus.Txn) (consensus.TxnResult, error) {
	if err := s.check(); err != nil {
		return consensus.TxnResult{}, err
	}
	// Through the wire form, as RPCTransport sends it.
	req := txnToWire(p, t)
	b, err := json.Marshal(req)
	if err != nil {
		return consensus.TxnResult{}, err
	}
	var back kvpb.LinTxnRequest
	if err := json.Unmarshal(b, &back); err != nil {
		return consensus.TxnResult{}, err
	}
	resp, err := s.srv.Txn(ctx, &back)
	if err != nil {
		return consensus.TxnResult{}, sentWriteError(err)
	}
	if err := redirectError(p, resp.GetRedirect()); err != nil {
		return consensus.TxnResult{}, err
	}
	return txnResultFromWire(resp), nil
}

// samePartition returns n keys of one partition of c's ring, and a key of
// another partition.
func samePartition(t *testing.T, c *Coordinator, n int) (keys [][]byte, other []byte) {
	t.Helper()
	r := c.deps.Ring.Ring()
	p := r.PartitionOf([]byte("k0"))
	for i := 0; len(keys) < n || other == nil; i++ {
		k := []byte("k" + strconv.Itoa(i))
		switch {
		case r.PartitionOf(k) == p && len(keys) < n:
			keys = append(keys, k)
		case r.PartitionOf(k) != p && other == nil:
			other = k
		}
	}
	return keys, other
}

func TestTxn(t *testing.T) {
	n1, n9, _ := newLinNode(t)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	keys, _ := samePartition(t, n1, 6)
	for i, c := range []*Coordinator{n1, n9} {
		t.Run(c.cfg.NodeID, func(t *testing.T) {
			a, b, d := keys[3*i], keys[3*i+1], keys[3*i+2]
			if err := c.Set(ctx, d, []byte("old"), Linearizable); err != nil {
				t.Fatal(err)
			}
			res, err := c.Txn(ctx, &TxnRequest{
				Compares: []consensus.Compare{{Kind: consensus.CompareAbsent, Key: a}},
				Success: []TxnOp{{Kind: consensus.OpSet, Key: a, Value: []byte("1")}, {Kind: consensus.OpSet, Key: b, Value: []byte("2"), TTL: time.Hour},
					{Kind: consensus.OpGet, Key: d}},
			})
			if err != nil || !res.Succeeded || len(res.Results) != 3 {
				t.Fatalf("txn: %+v %v", res, err)
			}
			if r := res.Results[2]; !r.Found || string(r.Record.Value) != "old" {
				t.Fatalf("get d: got %+v, want old", r)
			}
			for _, want := range []struct {
				key, value string
				found      bool
			}{{string(a), "1", true}, {string(b), "2", true}, {string(d), "old", true}} {
				it, found, err := c.GetItem(ctx, []byte(want.key), Linearizable)
				if err != nil || found != want.found || string(it.Value) != want.value {
					t.Fatalf("after txn, %s: got %q %v %v, want %q %v", want.key, it.Value, found, err, want.value, want.found)
				}
				if want.key == string(b) && it.TTL(c.now()) < 59*time.Minute {
					t.Fatalf("b's ttl: got %s, want about an hour", it.TTL(c.now()))
				}
			}
			// The compare fails now: the failure branch runs.
			res, err = c.Txn(ctx, &TxnRequest{
				Compares: []consensus.Compare{{Kind: consensus.CompareAbsent, Key: a}},
				Success:  []TxnOp{{Kind: consensus.OpSet, Key: a, Value: []byte("x")}},
				Failure:  []TxnOp{{Kind: consensus.OpGet, Key: a}},
			})
			if err != nil || res.Succeeded || len(res.Results) != 1 || string(res.Results[0].Record.Value) != "1" {
				t.Fatalf("failed compare: %+v %v", res, err)
			}
		})
	}
}

func TestTxnRefused(t *testing.T) {
	n1, n9, lin := newLinNode(t)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	keys, other := samePartition(t, n1, 2)
	a := keys[0]
	get := func(k []byte) TxnOp { return TxnOp{Kind: consensus.OpGet, Key: k} }
	var many []TxnOp
	for i := range consensus.MaxTxnKeys + 1 {
		many = append(many, get([]byte("m"+strconv.Itoa(i))))
	}
	big := make([]byte, n1.cfg.MaxValueBytes)
	var bigOps []TxnOp
	for i := range 3 {
		bigOps = append(bigOps, TxnOp{Kind: consensus.OpSet, Key: []byte("big" + strconv.Itoa(i)), Value: big})
	}
	for _, tc := range []struct {
		name string
		req  *TxnRequest
		want error
	}{
		{"empty", &TxnRequest{}, ErrInvalidArgument},
		{"duplicate key", &TxnRequest{Success: []TxnOp{get(a), {Kind: consensus.OpDelete, Key: a}}}, ErrInvalidArgument},
		{"129 keys", &TxnRequest{Success: many}, ErrInvalidArgument},
		{"too many bytes", &TxnRequest{Success: bigOps}, ErrInvalidArgument},
		{"value over the limit", &TxnRequest{Success: []TxnOp{{Kind: consensus.OpSet, Key: a, Value: append(big, 1)}}}, ErrInvalidArgument},
		{"reserved key", &TxnRequest{Success: []TxnOp{get([]byte("\x00ringkv/ring"))}}, ErrInvalidArgument},
		{"empty key", &TxnRequest{Compares: []consensus.Compare{{Kind: consensus.CompareAbsent}}}, ErrInvalidArgument},
		{"bad ttl", &TxnRequest{Success: []TxnOp{{Kind: consensus.OpSet, Key: a, TTL: -time.Second}}}, ErrInvalidArgument},
		{"delete with value", &TxnRequest{Success: []TxnOp{{Kind: consensus.OpDelete, Key: a, Value: []byte("v")}}}, ErrInvalidArgument},
		{"unknown op", &TxnRequest{Success: []TxnOp{{Kind: 7, Key: a}}}, ErrInvalidArgument},
		{"two partitions, one invalid", &TxnRequest{Success: []TxnOp{get(a), {Kind: consensus.OpDelete, Key: other, Value: []byte("v")}}}, ErrInvalidArgument},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := lin.calls
			for _, c := range []*Coordinator{n1, n9} {
				if _, err := c.Txn(ctx, tc.req); !errors.Is(err, tc.want) {
					t.Fatalf("%s: got %v, want %v", c.cfg.NodeID, err, tc.want)
				}
			}
			if lin.calls != before {
				t.Fatalf("a refused transaction was forwarded %d times", lin.calls-before)
			}
		})
	}
	// A refusal only the leader can make (the answer too large) comes back
	// at once as invalid, not retried until the deadline.
	half := make([]byte, 900<<10) // the in-memory test store holds records up to 1 MiB
	three, _ := samePartition(t, n1, 5)
	var gets []TxnOp
	for _, k := range three[2:] {
		if _, err := n1.Txn(ctx, &TxnRequest{Success: []TxnOp{{Kind: consensus.OpSet, Key: k, Value: half}}}); err != nil {
			t.Fatal(err)
		}
		gets = append(gets, get(k))
	}
	start := time.Now()
	if _, err := n9.Txn(ctx, &TxnRequest{Success: gets}); !errors.Is(err, ErrInvalidArgument) || !strings.Contains(err.Error(), "answer") {
		t.Fatalf("gets over 2 MiB: got %v, want ErrInvalidArgument about the answer", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("refusal took %s: retried until the deadline?", d)
	}
	if _, err := n9.Txn(ctx, &TxnRequest{Success: gets[:1]}); err != nil {
		t.Fatalf("one get of 900 KiB: %v", err)
	}
}

func TestTxnHTTP(t *testing.T) {
	n1, _, _ := newLinNode(t)
	srv := httptest.NewServer(HTTPHandler(n1))
	defer srv.Close()
	keys, other := samePartition(t, n1, 3)
	a, b, d := string(keys[0]), string(keys[1]), string(keys[2])
	do := func(t *testing.T, method, body string) (int, map[string]any) {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), method, srv.URL+"/api/txn", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = resp.Body.Close() }() // read fully below
		raw, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		var out map[string]any
		if err := json.Unmarshal(raw, &out); err != nil {
			t.Fatalf("body %q is not JSON: %v", raw, err)
		}
		return resp.StatusCode, out
	}
	code, out := do(t, "POST", fmt.Sprintf(`{"compare":[{"key":%q,"absent":true}],"success":[{"set":%q,"value":"1"},{"set":%q,"value":"2","ttl":"30s"},{"get":%q}]}`, a, a, b, d))
	got, _ := json.Marshal(out)
	want := fmt.Sprintf(`{"results":[{"key":%q,"op":"set"},{"key":%q,"op":"set"},{"found":false,"key":%q,"op":"get"}],"succeeded":true}`, a, b, d)
	if code != 200 || string(got) != want {
		t.Fatalf("first txn: got %d %s, want 200 %s", code, got, want)
	}
	code, out = do(t, "POST", fmt.Sprintf(`{"compare":[{"key":%q,"absent":true}],"failure":[{"get":%q},{"get":%q}]}`, a, a, b))
	results, _ := out["results"].([]any)
	if code != 200 || out["succeeded"] != false || len(results) != 2 {
		t.Fatalf("second txn: got %d %v", code, out)
	}
	ra, _ := results[0].(map[string]any)
	rb, _ := results[1].(map[string]any)
	version, _ := ra["version"].(string)
	if ra["value"] != "1" || ra["found"] != true || version == "" || rb["value"] != "2" {
		t.Fatalf("failure branch: got %v", results)
	}
	if ttl, _ := rb["ttl_ms"].(float64); ttl < 20_000 || ttl > 30_000 {
		t.Fatalf("b's ttl_ms: got %v, want about 30000", rb["ttl_ms"])
	}
	// The version read makes an optimistic lock: as a string, then as a
	// number, then a stale one.
	for _, tc := range []struct {
		version string
		want    bool
	}{{strconv.Quote(version), true}, {version, false}} {
		code, out = do(t, "POST", fmt.Sprintf(`{"compare":[{"key":%q,"version":%s},{"key":%q,"ttl_at_least":10}],"success":[{"delete":%q}]}`, a, tc.version, b, d))
		if code != 200 || out["succeeded"] != tc.want {
			t.Fatalf("version %s: got %d %v, want succeeded %v", tc.version, code, out, tc.want)
		}
		if tc.want {
			// The delete of d did not change a: write a to move its version.
			if err := n1.Set(t.Context(), []byte(a), []byte("3"), Linearizable); err != nil {
				t.Fatal(err)
			}
		}
	}

	many := make([]string, consensus.MaxTxnKeys+1)
	for i := range many {
		many[i] = fmt.Sprintf(`{"get":"m%d"}`, i)
	}
	for _, tc := range []struct {
		name, method, body string
		code               int
		says               string
	}{
		{"GET", "GET", "", 405, "not allowed"},
		{"malformed", "POST", `{"compare":`, 400, "malformed"},
		{"unknown field", "POST", `{"compares":[]}`, 400, "unknown field"},
		{"empty", "POST", `{}`, 400, "at least one"},
		{"two kinds in a compare", "POST", `{"compare":[{"key":"a","value":"1","absent":true}]}`, 400, "exactly one"},
		{"no kind in a compare", "POST", `{"compare":[{"key":"a"}]}`, 400, "exactly one"},
		{"compare without key", "POST", `{"compare":[{"absent":true}]}`, 400, "needs a \"key\""},
		{"bad version", "POST", `{"compare":[{"key":"a","version":"x"}]}`, 400, "version"},
		{"two kinds in an op", "POST", `{"success":[{"get":"a","delete":"a"}]}`, 400, "exactly one"},
		{"set without value", "POST", `{"success":[{"set":"a"}]}`, 400, "needs a \"value\""},
		{"get with value", "POST", `{"success":[{"get":"a","value":"v"}]}`, 400, "only a set"},
		{"bad ttl", "POST", `{"success":[{"set":"a","value":"v","ttl":"soon"}]}`, 400, "ttl"},
		{"duplicate key", "POST", `{"success":[{"get":"a"},{"set":"a","value":"v"}]}`, 400, "appears twice"},
		{"129 keys", "POST", `{"success":[` + strings.Join(many, ",") + `]}`, 400, "129 distinct keys"},
		{"not linearizable", "POST", `{"success":[{"get":"a"}],"consistency":"quorum"}`, 400, "only linearizable"},
		{"reserved key", "POST", `{"success":[{"get":"\u0000ringkv/ring"}]}`, 400, "reserved"},
		{"two partitions, one invalid", "POST", fmt.Sprintf(`{"success":[{"get":%q},{"delete":%q,"value":"v"}]}`, a, other), 400, "only a set"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out := do(t, tc.method, tc.body)
			msg, _ := out["error"].(string)
			if code != tc.code || !strings.Contains(msg, tc.says) {
				t.Fatalf("got %d %v, want %d with an error saying %q", code, out, tc.code, tc.says)
			}
		})
	}
	// A body far over the limit is refused without reading it all.
	huge := `{"success":[{"set":"a","value":"` + strings.Repeat("v", maxTxnBodyBytes) + `"}]}`
	if code, out := do(t, "POST", huge); code != 400 || !strings.Contains(fmt.Sprint(out["error"]), "over") {
		t.Fatalf("huge body: got %d %v", code, out)
	}
}

func TestClientServerTxn(t *testing.T) {
	n1, n9, _ := newLinNode(t)
	ctx := t.Context()
	keys, other := samePartition(t, n1, 2)
	s := NewClientServer(n9, nil)
	resp, err := s.Txn(ctx, &kvpb.ClientTxnRequest{
		Compares: []*kvpb.ClientTxnCompare{{Kind: uint32(consensus.CompareAbsent), Key: keys[0]}},
		Success:  []*kvpb.ClientTxnOp{{Kind: uint32(consensus.OpSet), Key: keys[0], Value: []byte("v"), TtlMicros: 60e6}, {Kind: uint32(consensus.OpGet), Key: keys[1]}},
	})
	if err != nil || resp.GetError() != 0 || !resp.GetSucceeded() || len(resp.GetResults()) != 2 || resp.GetHeader().GetNodeId() != "n9" {
		t.Fatalf("txn: %v %v", resp, err)
	}
	resp, err = s.Txn(ctx, &kvpb.ClientTxnRequest{Failure: []*kvpb.ClientTxnOp{{Kind: uint32(consensus.OpGet), Key: keys[0]}},
		Compares: []*kvpb.ClientTxnCompare{{Kind: uint32(consensus.CompareAbsent), Key: keys[0]}}})
	r := resp.GetResults()
	if err != nil || resp.GetSucceeded() || len(r) != 1 || string(r[0].GetValue()) != "v" || r[0].GetVersion() == 0 ||
		r[0].GetTtlMicros() <= 0 || r[0].GetTtlMicros() > 60e6 {
		t.Fatalf("read back: %v %v", resp, err)
	}
	for _, tc := range []struct {
		name string
		req  *kvpb.ClientTxnRequest
		want kvpb.ErrorCode
	}{
		{"empty", &kvpb.ClientTxnRequest{}, kvpb.ErrorCode_ERROR_CODE_INVALID_ARGUMENT},
		{"negative ttl", &kvpb.ClientTxnRequest{Success: []*kvpb.ClientTxnOp{{Kind: 2, Key: keys[0], TtlMicros: -1}}}, kvpb.ErrorCode_ERROR_CODE_INVALID_ARGUMENT},
		{"negative ttl compare", &kvpb.ClientTxnRequest{Compares: []*kvpb.ClientTxnCompare{{Kind: 4, Key: keys[0], TtlMicros: -1}}}, kvpb.ErrorCode_ERROR_CODE_INVALID_ARGUMENT},
		{"unknown kind", &kvpb.ClientTxnRequest{Success: []*kvpb.ClientTxnOp{{Kind: 300, Key: keys[0]}}}, kvpb.ErrorCode_ERROR_CODE_INVALID_ARGUMENT},
		{"two partitions, one invalid", &kvpb.ClientTxnRequest{Success: []*kvpb.ClientTxnOp{{Kind: 1, Key: keys[0]}, {Kind: 300, Key: other}}}, kvpb.ErrorCode_ERROR_CODE_INVALID_ARGUMENT},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := s.Txn(ctx, tc.req)
			if err != nil || resp.GetError() != tc.want || resp.GetMessage() == "" {
				t.Fatalf("got %v %v, want code %v", resp, err, tc.want)
			}
		})
	}
}
