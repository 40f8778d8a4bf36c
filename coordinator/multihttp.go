package coordinator

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
)

// The HTTP shorthands for multi-key operations (multi.go):
//
//	POST /api/mset?consistency=L {"pairs":[{"key":"a","value":"1","ttl":"30s"}]} -> {"success":true}
//	GET  /api/mget?key=a&key=b&consistency=L
//	     -> {"results":[{"key":"a","found":true,"value":"1","version":"123"},{"key":"b","found":false}]}
//
// consistency (default quorum) may also be given in mset's body. At
// linearizable mset is one transaction and mget a snapshot; at the other
// levels mset is a logged batch and mget reads each key on its own.
// Errors as for /api/txn: 400 bad input or limits (no key, more than 128,
// a duplicate, a reserved key), 409 conflict, 503 unavailable, 504
// unknown outcome, each with {"error":"..."}.

type msetJSON struct {
	Pairs       []msetPairJSON `json:"pairs"`
	Consistency string         `json:"consistency,omitempty"`
}

type msetPairJSON struct {
	Key   *string         `json:"key"`
	Value *string         `json:"value"`
	TTL   json.RawMessage `json:"ttl,omitempty"`
}

// MGetResultJSON is one key of /api/mget's answer: value and version
// (a decimal string: versions exceed JSON's exact integers) only when
// found.
type MGetResultJSON struct {
	Key     string `json:"key"`
	Found   bool   `json:"found"`
	Value   string `json:"value,omitempty"`
	Version string `json:"version,omitempty"`
}

func (h *httpAPI) mset(w http.ResponseWriter, r *http.Request) {
	if !allow(w, r, http.MethodPost, http.MethodPut) {
		return
	}
	var body msetJSON
	if !decodeLimited(w, r, &body, maxTxnBodyBytes) {
		return
	}
	level, err := ParseLevel(levelNameOf(r, body.Consistency))
	if err != nil {
		writeError(w, err)
		return
	}
	pairs := make([]MSetPair, len(body.Pairs))
	for i, p := range body.Pairs {
		if p.Key == nil || p.Value == nil {
			writeError(w, fmt.Errorf("%w: pair %d needs \"key\" and \"value\" strings", ErrInvalidArgument, i))
			return
		}
		pairs[i] = MSetPair{Key: []byte(*p.Key), Value: []byte(*p.Value)}
		if len(p.TTL) > 0 && string(p.TTL) != "null" {
			if pairs[i].TTL, err = ParseTTL(p.TTL); err != nil {
				writeError(w, fmt.Errorf("pair %d: %w", i, err))
				return
			}
		}
	}
	if err := h.c.MSet(r.Context(), pairs, level); err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]bool{"success": true})
}

func (h *httpAPI) mget(w http.ResponseWriter, r *http.Request) {
	if !allow(w, r, http.MethodGet) {
		return
	}
	level, ok := queryLevel(w, r)
	if !ok {
		return
	}
	names := r.URL.Query()["key"]
	keys := make([][]byte, len(names))
	for i, k := range names {
		keys[i] = []byte(k)
	}
	res, err := h.c.MGet(r.Context(), keys, level)
	if err != nil {
		writeError(w, err)
		return
	}
	out := struct {
		Results []MGetResultJSON `json:"results"`
	}{Results: make([]MGetResultJSON, len(res))}
	for i, g := range res {
		out.Results[i] = MGetResultJSON{Key: string(g.Key), Found: g.Found}
		if g.Found {
			out.Results[i].Value, out.Results[i].Version = string(g.Value), strconv.FormatUint(g.Version, 10)
		}
	}
	writeJSON(w, http.StatusOK, out)
}
