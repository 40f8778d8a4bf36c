package coordinator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/ringkv/ringkv/auth"
	"github.com/ringkv/ringkv/consensus"
	"github.com/ringkv/ringkv/replica"
)

// HTTPHandler serves the client HTTP API of the original spec on top of c:
//
//	POST   /api/set     {"key":"k","value":"v","ttl":"30s"}  -> {"success":true}
//	GET    /api/get?key=k                        -> {"value":"v","found":true,"ttl_ms":29998} | 404 {"found":false}
//	GET    /api/list?prefix=p&limit=N            -> {"pairs":[{"key":"k","value":"v"}]}
//	DELETE /api/delete?key=k                     -> {"success":true}
//	POST   /api/cas  {"key":"k","expected":"old","value":"new"}
//	                 -> {"success":true} | {"success":false,"current":"..."}
//
// POST /api/txn runs a transaction (txnhttp.go); POST /api/mset and GET
// /api/mget are multi-key shorthands (multihttp.go).
//
// /api/cas is linearizable; "expected" omitted or null means put-if-absent,
// and "current" is absent when the key is absent.
//
// Every call takes ?consistency=one|quorum|all (default quorum); /api/set
// also accepts it in the JSON body. Bad input answers 400, too few replicas
// 503, a corrupt key on every replica 500, a node at its admission bound
// 429 with Retry-After, each with {"error":"..."}.
func HTTPHandler(c *Coordinator) http.Handler {
	h := &httpAPI{c: c}
	mux := http.NewServeMux()
	mux.HandleFunc("/api/set", h.set)
	mux.HandleFunc("/api/get", h.get)
	mux.HandleFunc("/api/list", h.list)
	mux.HandleFunc("/api/delete", h.delete)
	mux.HandleFunc("/api/cas", h.cas)
	mux.HandleFunc("/api/expire", h.expire)
	mux.HandleFunc("/api/persist", h.persist)
	mux.HandleFunc("/api/txn", h.txn)
	mux.HandleFunc("/api/mset", h.mset)
	mux.HandleFunc("/api/mget", h.mget)
	return admitHTTP(c, mux)
}

type httpAPI struct {
	c *Coordinator
}

type setRequest struct {
	Key         *string         `json:"key"`
	Value       *string         `json:"value"`
	Consistency string          `json:"consistency,omitempty"`
	TTL         json.RawMessage `json:"ttl,omitempty"`
}

type pairJSON struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// levelNameOf is the request's consistency level name: the query's
// "consistency", else the body's.
func levelNameOf(r *http.Request, body string) string {
	if name := r.URL.Query().Get("consistency"); name != "" {
		return name
	}
	return body
}

func (h *httpAPI) set(w http.ResponseWriter, r *http.Request) {
	if !allow(w, r, http.MethodPost, http.MethodPut) {
		return
	}
	var req setRequest
	if !h.decodeBody(w, r, &req) {
		return
	}
	if req.Key == nil || req.Value == nil {
		writeError(w, fmt.Errorf("%w: body needs \"key\" and \"value\" strings", ErrInvalidArgument))
		return
	}
	levelName := levelNameOf(r, req.Consistency)
	level, err := ParseLevel(levelName)
	if err != nil {
		writeError(w, err)
		return
	}
	opts, err := ttlOptions(r, req.TTL)
	if err != nil {
		writeError(w, err)
		return
	}
	if err := h.c.Set(r.Context(), []byte(*req.Key), []byte(*req.Value), level, opts...); err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]bool{"success": true})
}

func (h *httpAPI) get(w http.ResponseWriter, r *http.Request) {
	if !allow(w, r, http.MethodGet) {
		return
	}
	level, ok := queryLevel(w, r)
	if !ok {
		return
	}
	it, found, err := h.c.GetItem(r.Context(), []byte(r.URL.Query().Get("key")), level)
	switch {
	case err != nil:
		writeError(w, err)
	case !found:
		writeJSON(w, http.StatusNotFound, map[string]bool{"found": false})
	default:
		writeJSON(w, http.StatusOK, struct {
			Value string `json:"value"`
			Found bool   `json:"found"`
			TTLMs int64  `json:"ttl_ms,omitempty"`
		}{string(it.Value), true, it.TTL(h.c.now()).Milliseconds()})
	}
}

func (h *httpAPI) list(w http.ResponseWriter, r *http.Request) {
	if !allow(w, r, http.MethodGet) {
		return
	}
	level, ok := queryLevel(w, r)
	if !ok {
		return
	}
	limit := 0
	if s := r.URL.Query().Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			writeError(w, fmt.Errorf("%w: limit %q is not a number", ErrInvalidArgument, s))
			return
		}
		limit = n
	}
	pairs, err := h.c.List(r.Context(), []byte(r.URL.Query().Get("prefix")), limit, level)
	if err != nil {
		writeError(w, err)
		return
	}
	out := make([]pairJSON, len(pairs))
	for i, p := range pairs {
		out[i] = pairJSON{Key: string(p.Key), Value: string(p.Value)}
	}
	writeJSON(w, http.StatusOK, map[string][]pairJSON{"pairs": out})
}

func (h *httpAPI) delete(w http.ResponseWriter, r *http.Request) {
	if !allow(w, r, http.MethodDelete, http.MethodPost) {
		return
	}
	level, ok := queryLevel(w, r)
	if !ok {
		return
	}
	if err := h.c.Delete(r.Context(), []byte(r.URL.Query().Get("key")), level); err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]bool{"success": true})
}

type casRequest struct {
	Key         *string         `json:"key"`
	Expected    *string         `json:"expected"`
	Value       *string         `json:"value"`
	Consistency string          `json:"consistency,omitempty"`
	TTL         json.RawMessage `json:"ttl,omitempty"`
}

func (h *httpAPI) cas(w http.ResponseWriter, r *http.Request) {
	if !allow(w, r, http.MethodPost) {
		return
	}
	var req casRequest
	if !h.decodeBody(w, r, &req) {
		return
	}
	if req.Key == nil || req.Value == nil {
		writeError(w, fmt.Errorf("%w: body needs \"key\" and \"value\" strings", ErrInvalidArgument))
		return
	}
	levelName := levelNameOf(r, req.Consistency)
	if levelName != "" {
		if level, err := ParseLevel(levelName); err != nil || level != Linearizable {
			writeError(w, fmt.Errorf("%w: compare-and-set is only linearizable, got consistency %q", ErrInvalidArgument, levelName))
			return
		}
	}
	opts, err := ttlOptions(r, req.TTL)
	if err != nil {
		writeError(w, err)
		return
	}
	var expected *[]byte
	if req.Expected != nil {
		e := []byte(*req.Expected)
		expected = &e
	}
	res, err := h.c.CompareAndSet(r.Context(), []byte(*req.Key), expected, []byte(*req.Value), opts...)
	switch {
	case err != nil:
		writeError(w, err)
	case res.Swapped:
		writeJSON(w, http.StatusOK, map[string]bool{"success": true})
	case res.Found:
		writeJSON(w, http.StatusOK, struct {
			Success bool   `json:"success"`
			Current string `json:"current"`
		}{false, string(res.Current)})
	default:
		writeJSON(w, http.StatusOK, map[string]bool{"success": false})
	}
}

type expireRequest struct {
	Key         *string         `json:"key"`
	Consistency string          `json:"consistency,omitempty"`
	TTL         json.RawMessage `json:"ttl,omitempty"`
}

func (h *httpAPI) expire(w http.ResponseWriter, r *http.Request) { h.setExpiry(w, r, true) }

func (h *httpAPI) persist(w http.ResponseWriter, r *http.Request) { h.setExpiry(w, r, false) }

// setExpiry serves /api/expire (withTTL) and /api/persist.
func (h *httpAPI) setExpiry(w http.ResponseWriter, r *http.Request, withTTL bool) {
	if !allow(w, r, http.MethodPost) {
		return
	}
	var req expireRequest
	if !h.decodeBody(w, r, &req) {
		return
	}
	if req.Key == nil {
		writeError(w, fmt.Errorf("%w: body needs a \"key\" string", ErrInvalidArgument))
		return
	}
	levelName := levelNameOf(r, req.Consistency)
	level, err := ParseLevel(levelName)
	if err != nil {
		writeError(w, err)
		return
	}
	raw := req.TTL
	if len(raw) == 0 && r.URL.Query().Has("ttl") {
		raw, _ = json.Marshal(r.URL.Query().Get("ttl")) //nolint:errchkjson // a string always encodes
	}
	var found bool
	switch {
	case withTTL && len(raw) == 0:
		err = fmt.Errorf("%w: /api/expire needs a \"ttl\"", ErrInvalidArgument)
	case withTTL:
		var ttl time.Duration
		if ttl, err = ParseTTL(raw); err == nil {
			found, err = h.c.Expire(r.Context(), []byte(*req.Key), ttl, level)
		}
	case len(raw) != 0:
		err = fmt.Errorf("%w: /api/persist takes no \"ttl\"", ErrInvalidArgument)
	default:
		found, err = h.c.Persist(r.Context(), []byte(*req.Key), level)
	}
	switch {
	case err != nil:
		writeError(w, err)
	case !found:
		writeJSON(w, http.StatusNotFound, map[string]bool{"found": false})
	default:
		writeJSON(w, http.StatusOK, map[string]bool{"success": true})
	}
}

// ttlOptions turns a request's "ttl" (the body's raw JSON, else ?ttl=)
// into write options: none when there is no TTL.
func ttlOptions(r *http.Request, raw json.RawMessage) ([]WriteOption, error) {
	if len(raw) == 0 && r.URL.Query().Has("ttl") {
		raw, _ = json.Marshal(r.URL.Query().Get("ttl")) //nolint:errchkjson // a string always encodes
	}
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	ttl, err := ParseTTL(raw)
	if err != nil {
		return nil, err
	}
	return []WriteOption{WithTTL(ttl)}, nil
}

// ParseTTL parses an HTTP request's "ttl": a JSON number of seconds, or a
// JSON string holding a number of seconds or a Go duration ("30s",
// "1m30s"). The TTL must be positive and at most MaxTTL. Errors wrap
// ErrInvalidArgument.
func ParseTTL(raw json.RawMessage) (time.Duration, error) {
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return 0, fmt.Errorf("%w: ttl %s: %w", ErrInvalidArgument, raw, err)
	}
	var secs float64
	switch x := v.(type) {
	case float64:
		secs = x
	case string:
		if f, err := strconv.ParseFloat(x, 64); err == nil {
			secs = f
			break
		}
		d, err := time.ParseDuration(x)
		if err != nil {
			return 0, fmt.Errorf("%w: ttl %q is neither seconds nor a duration like \"30s\"", ErrInvalidArgument, x)
		}
		return d, CheckTTL(d)
	default:
		return 0, fmt.Errorf("%w: ttl %s is neither seconds nor a duration string", ErrInvalidArgument, raw)
	}
	if math.IsNaN(secs) || secs <= 0 || secs > MaxTTL.Seconds() {
		return 0, fmt.Errorf("%w: ttl %v s outside (0, %s]", ErrInvalidArgument, secs, MaxTTL)
	}
	d := time.Duration(secs * float64(time.Second))
	return d, CheckTTL(d)
}

// decodeBody decodes one JSON object into v, answering 400 itself when it
// cannot.
func (h *httpAPI) decodeBody(w http.ResponseWriter, r *http.Request, v any) bool {
	return decodeLimited(w, r, v, 2*int64(h.c.cfg.MaxValueBytes)+int64(h.c.cfg.MaxKeyBytes)*6+4096)
}

func allow(w http.ResponseWriter, r *http.Request, methods ...string) bool {
	for _, m := range methods {
		if r.Method == m {
			return true
		}
	}
	w.Header().Set("Allow", fmt.Sprint(methods))
	writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": fmt.Sprintf("method %s not allowed", r.Method)})
	return false
}

func queryLevel(w http.ResponseWriter, r *http.Request) (Level, bool) {
	level, err := ParseLevel(r.URL.Query().Get("consistency"))
	if err != nil {
		writeError(w, err)
		return 0, false
	}
	return level, true
}

// StatusFor maps an error from the Coordinator to an HTTP status code.
func StatusFor(err error) int {
	switch {
	case errors.Is(err, ErrInvalidArgument):
		return http.StatusBadRequest
	case errors.Is(err, auth.ErrUnauthenticated):
		return http.StatusUnauthorized
	case errors.Is(err, auth.ErrPermissionDenied):
		return http.StatusForbidden
	case errors.Is(err, auth.ErrUnavailable):
		return http.StatusServiceUnavailable
	case errors.Is(err, consensus.ErrAmbiguous):
		// The write may or may not have been applied.
		return http.StatusGatewayTimeout
	case errors.Is(err, ErrNotImplemented):
		return http.StatusNotImplemented
	case errors.Is(err, ErrConflict):
		return http.StatusConflict
	case errors.Is(err, replica.ErrDiskFull):
		// The node's disk is full: nothing applied, reads still served.
		return http.StatusInsufficientStorage
	case overloaded(err):
		// Refused at an admission bound: nothing done, retry later.
		return http.StatusTooManyRequests
	case errors.Is(err, ErrUnavailable), errors.Is(err, ErrClosed), errors.Is(err, ErrDraining), errors.Is(err, ErrNotUpgraded):
		return http.StatusServiceUnavailable
	case errors.Is(err, context.DeadlineExceeded):
		return http.StatusGatewayTimeout
	default:
		return http.StatusInternalServerError
	}
}

func writeError(w http.ResponseWriter, err error) {
	code := StatusFor(err)
	if code == http.StatusTooManyRequests && w.Header().Get("Retry-After") == "" {
		// Refused past admission (a rate limit, a group's queued
		// proposals): a rate limit knows its wait, the rest say a second.
		wait := time.Second
		var rl *RateLimitedError
		if errors.As(err, &rl) {
			wait = rl.Wait
		}
		setRetryAfter(w, wait)
	}
	writeJSON(w, code, map[string]string{"error": err.Error()})
}

// writeJSON writes v as a JSON response with status code.
func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v) // the client may have gone; nothing to do
}
