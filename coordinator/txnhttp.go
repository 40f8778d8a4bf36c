package coordinator

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/ringkv/ringkv/consensus"
	"github.com/ringkv/ringkv/replica"
)

// POST /api/txn (docs/ARCHITECTURE.md, "Transactions"):
//
//	{"compare":[{"key":"a","value":"1"},{"key":"b","absent":true},
//	            {"key":"c","version":"123"},{"key":"d","ttl_at_least":"5s"}],
//	 "success":[{"get":"a"},{"set":"b","value":"2","ttl":"30s"},{"delete":"c"}],
//	 "failure":[{"get":"b"}]}
//	-> {"succeeded":true,"results":[{"op":"get","key":"a","found":true,"value":"1","version":"123"},
//	                                 {"op":"set","key":"b"},{"op":"delete","key":"c"}]}
//
// Versions are decimal strings (they exceed JSON's exact integers); a
// compare's version may also be a number. Each compare names exactly one
// of value, absent, version and ttl_at_least (seconds or a Go duration);
// each op exactly one of get, set and delete. Linearizable only.

type txnJSON struct {
	Compare     []txnCompareJSON `json:"compare"`
	Success     []txnOpJSON      `json:"success"`
	Failure     []txnOpJSON      `json:"failure"`
	Consistency string           `json:"consistency,omitempty"`
}

type txnCompareJSON struct {
	Key        *string         `json:"key"`
	Value      *string         `json:"value,omitempty"`
	Absent     bool            `json:"absent,omitempty"`
	Version    json.RawMessage `json:"version,omitempty"`
	TTLAtLeast json.RawMessage `json:"ttl_at_least,omitempty"`
}

type txnOpJSON struct {
	Get    *string         `json:"get,omitempty"`
	Set    *string         `json:"set,omitempty"`
	Delete *string         `json:"delete,omitempty"`
	Value  *string         `json:"value,omitempty"`
	TTL    json.RawMessage `json:"ttl,omitempty"`
}

// TxnAnswer is /api/txn's answer, and what `ringkv txn` prints: which
// branch ran, and one result per op of it.
type TxnAnswer struct {
	Succeeded bool          `json:"succeeded"`
	Results   []TxnOpAnswer `json:"results"`
}

// TxnOpAnswer is one op's result; a get's carries what it found.
type TxnOpAnswer struct {
	Op      string  `json:"op"`
	Key     string  `json:"key"`
	Found   *bool   `json:"found,omitempty"`
	Value   *string `json:"value,omitempty"`
	Version string  `json:"version,omitempty"`
	TTLMs   int64   `json:"ttl_ms,omitempty"`
}

// NewTxnAnswer lays out the answer of a transaction whose chosen branch
// is branch; got(i) gives what the branch's i-th op, a get, found (ok
// false when the answer has no result for it).
func NewTxnAnswer(succeeded bool, branch []TxnOp, got func(i int) (found bool, value []byte, version uint64, ttl time.Duration, ok bool)) TxnAnswer {
	out := TxnAnswer{Succeeded: succeeded, Results: make([]TxnOpAnswer, len(branch))}
	for i, op := range branch {
		o := TxnOpAnswer{Op: op.Kind.String(), Key: string(op.Key)}
		if op.Kind == consensus.OpGet {
			if found, value, version, ttl, ok := got(i); ok {
				o.Found = &found
				if found {
					v := string(value)
					o.Value, o.Version, o.TTLMs = &v, strconv.FormatUint(version, 10), ttl.Milliseconds()
				}
			}
		}
		out.Results[i] = o
	}
	return out
}

// maxTxnBodyBytes bounds a /api/txn body: JSON escaping may take several
// bytes per byte of key or value; the transaction's own limits
// (consensus.MaxTxnBytes) are checked after decoding.
const maxTxnBodyBytes = 6*consensus.MaxTxnBytes + 64<<10

func (h *httpAPI) txn(w http.ResponseWriter, r *http.Request) {
	if !allow(w, r, http.MethodPost) {
		return
	}
	var body txnJSON
	if !decodeLimited(w, r, &body, maxTxnBodyBytes) {
		return
	}
	if name := levelNameOf(r, body.Consistency); name != "" {
		if level, err := ParseLevel(name); err != nil || level != Linearizable {
			writeError(w, fmt.Errorf("%w: transactions are only linearizable, got consistency %q", ErrInvalidArgument, name))
			return
		}
	}
	req, err := txnFromJSON(&body)
	if err != nil {
		writeError(w, err)
		return
	}
	res, err := h.c.Txn(r.Context(), req)
	if err != nil {
		writeError(w, err)
		return
	}
	branch := req.Success
	if !res.Succeeded {
		branch = req.Failure
	}
	now := h.c.now()
	out := NewTxnAnswer(res.Succeeded, branch, func(i int) (bool, []byte, uint64, time.Duration, bool) {
		if i >= len(res.Results) {
			return false, nil, 0, 0, false
		}
		got := res.Results[i]
		return got.Found, got.Record.Value, Version(got.Record), Item{Value: got.Record.Value, ExpiresAt: got.Record.ExpiresAt}.TTL(now), true
	})
	writeJSON(w, http.StatusOK, out)
}

// DecodeTxnJSON decodes a transaction in /api/txn's JSON form (unknown
// fields refused; "consistency", if given, must be linearizable) and
// checks its shape; Txn checks the rest. Errors wrap ErrInvalidArgument.
// `ringkv txn` reads the same form.
func DecodeTxnJSON(r io.Reader) (*TxnRequest, error) {
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	var body txnJSON
	if err := dec.Decode(&body); err != nil {
		return nil, fmt.Errorf("%w: malformed JSON: %w", ErrInvalidArgument, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%w: malformed JSON: trailing data after the object", ErrInvalidArgument)
	}
	if name := body.Consistency; name != "" {
		if level, err := ParseLevel(name); err != nil || level != Linearizable {
			return nil, fmt.Errorf("%w: transactions are only linearizable, got consistency %q", ErrInvalidArgument, name)
		}
	}
	return txnFromJSON(&body)
}

// txnFromJSON checks the JSON's shape and builds the request; the
// coordinator checks the rest.
func txnFromJSON(b *txnJSON) (*TxnRequest, error) {
	req := &TxnRequest{Compares: make([]consensus.Compare, len(b.Compare))}
	for i, c := range b.Compare {
		if c.Key == nil {
			return nil, fmt.Errorf("%w: compare %d needs a \"key\"", ErrInvalidArgument, i)
		}
		cmp := consensus.Compare{Key: []byte(*c.Key)}
		n := 0
		if c.Value != nil {
			n++
			cmp.Kind, cmp.Value = consensus.CompareValue, []byte(*c.Value)
		}
		if c.Absent {
			n++
			cmp.Kind = consensus.CompareAbsent
		}
		if len(c.Version) > 0 {
			n++
			v, err := parseVersion(c.Version)
			if err != nil {
				return nil, fmt.Errorf("compare %d: %w", i, err)
			}
			cmp.Kind, cmp.Version = consensus.CompareVersion, replica.Timestamp(v)
		}
		if len(c.TTLAtLeast) > 0 {
			n++
			d, err := ParseTTL(c.TTLAtLeast)
			if err != nil {
				return nil, fmt.Errorf("compare %d: ttl_at_least: %w", i, err)
			}
			cmp.Kind, cmp.TTL = consensus.CompareTTLAtLeast, d
		}
		if n != 1 {
			return nil, fmt.Errorf("%w: compare %d needs exactly one of \"value\", \"absent\": true, \"version\", \"ttl_at_least\"", ErrInvalidArgument, i)
		}
		req.Compares[i] = cmp
	}
	var err error
	if req.Success, err = txnOpsFromJSON("success", b.Success); err != nil {
		return nil, err
	}
	if req.Failure, err = txnOpsFromJSON("failure", b.Failure); err != nil {
		return nil, err
	}
	return req, nil
}

func txnOpsFromJSON(branch string, ops []txnOpJSON) ([]TxnOp, error) {
	out := make([]TxnOp, len(ops))
	for i, o := range ops {
		n := 0
		for _, k := range []*string{o.Get, o.Set, o.Delete} {
			if k != nil {
				n++
			}
		}
		if n != 1 {
			return nil, fmt.Errorf("%w: %s op %d needs exactly one of \"get\", \"set\", \"delete\" naming its key", ErrInvalidArgument, branch, i)
		}
		switch {
		case o.Get != nil:
			out[i] = TxnOp{Kind: consensus.OpGet, Key: []byte(*o.Get)}
		case o.Delete != nil:
			out[i] = TxnOp{Kind: consensus.OpDelete, Key: []byte(*o.Delete)}
		default:
			if o.Value == nil {
				return nil, fmt.Errorf("%w: %s op %d: a set needs a \"value\" string", ErrInvalidArgument, branch, i)
			}
			out[i] = TxnOp{Kind: consensus.OpSet, Key: []byte(*o.Set), Value: []byte(*o.Value)}
			if len(o.TTL) > 0 && string(o.TTL) != "null" {
				d, err := ParseTTL(o.TTL)
				if err != nil {
					return nil, fmt.Errorf("%s op %d: %w", branch, i, err)
				}
				out[i].TTL = d
			}
			continue
		}
		if o.Value != nil || len(o.TTL) > 0 {
			return nil, fmt.Errorf("%w: %s op %d: only a set takes \"value\" and \"ttl\"", ErrInvalidArgument, branch, i)
		}
	}
	return out, nil
}

// parseVersion reads a version: a decimal string or a JSON number.
func parseVersion(raw json.RawMessage) (uint64, error) {
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		s = string(raw)
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: version %s is not a non-negative integer", ErrInvalidArgument, raw)
	}
	return v, nil
}

// decodeLimited decodes one JSON object of at most limit bytes into v,
// answering 400 itself when it cannot.
func decodeLimited(w http.ResponseWriter, r *http.Request, v any, limit int64) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, limit))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, fmt.Errorf("%w: request body over %d bytes", ErrInvalidArgument, tooBig.Limit))
			return false
		}
		writeError(w, fmt.Errorf("%w: malformed JSON body: %w", ErrInvalidArgument, err))
		return false
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		writeError(w, fmt.Errorf("%w: malformed JSON body: trailing data after the object", ErrInvalidArgument))
		return false
	}
	return true
}
