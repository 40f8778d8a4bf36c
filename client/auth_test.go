package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"storj.io/drpc/drpcerr"
	"storj.io/drpc/drpcmetadata"

	"github.com/ringkv/ringkv/internal/rpcconn"
	"github.com/ringkv/ringkv/proto/kvpb"
)

// authNode is a Client service that checks bearer tokens as a node does:
// Login with password "pw" issues t1, t2, ... (valid for an hour), every
// operation of Do, Batch, List and Pipe (whose token is the stream's) is
// answered UNAUTHENTICATED unless its token is valid. off makes Login
// answer AUTH_DISABLED and lets everything through; refuse refuses every
// token.
type authNode struct {
	kvpb.DRPCClientUnimplementedServer

	mu      sync.Mutex
	off     bool
	refuse  bool
	valid   map[string]bool
	logins  int
	unauth  int      // operations refused
	allowed []string // the token of each operation let through ("" none)
	streams int      // Pipe streams opened
	ended   int      // Pipe streams the client closed (CloseSend)
}

func (n *authNode) set(fn func(n *authNode)) {
	n.mu.Lock()
	defer n.mu.Unlock()
	fn(n)
}

type authCounts struct{ logins, unauth, streams, ended int }

func (n *authNode) counts() authCounts {
	n.mu.Lock()
	defer n.mu.Unlock()
	return authCounts{n.logins, n.unauth, n.streams, n.ended}
}

// lastToken is the token of the last operation let through.
func (n *authNode) lastToken() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	if len(n.allowed) == 0 {
		return ""
	}
	return n.allowed[len(n.allowed)-1]
}

func (n *authNode) allow(ctx context.Context) bool {
	md, _ := drpcmetadata.Get(ctx)
	tok, bearer := strings.CutPrefix(md[authHeader], "Bearer ")
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.off || (bearer && n.valid[tok] && !n.refuse) {
		n.allowed = append(n.allowed, tok)
		return true
	}
	n.unauth++
	return false
}

func (n *authNode) result(ctx context.Context, op *kvpb.ClientOp) *kvpb.ClientResult {
	if !n.allow(ctx) {
		return &kvpb.ClientResult{Error: kvpb.ErrorCode_ERROR_CODE_UNAUTHENTICATED, Message: "fake: unauthenticated"}
	}
	if op.GetKind() == kvpb.ClientOp_KIND_GET {
		return &kvpb.ClientResult{Found: true, Value: op.GetKey()}
	}
	return &kvpb.ClientResult{}
}

var hdr = &kvpb.ClientHeader{NodeId: "fake"}

func (n *authNode) Login(_ context.Context, req *kvpb.LoginRequest) (*kvpb.LoginResponse, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.logins++
	switch {
	case n.off:
		return nil, drpcerr.WithCode(errors.New("fake: authentication is disabled"), uint64(kvpb.ErrorCode_ERROR_CODE_AUTH_DISABLED))
	case req.GetUser() != "u" || req.GetPassword() != "pw":
		return nil, drpcerr.WithCode(errors.New("fake: unauthenticated"), uint64(kvpb.ErrorCode_ERROR_CODE_UNAUTHENTICATED))
	}
	tok := fmt.Sprintf("t%d", n.logins)
	n.valid[tok] = true
	return &kvpb.LoginResponse{Token: tok, ExpiresUnixNanos: time.Now().Add(time.Hour).UnixNano()}, nil
}

func (n *authNode) Do(ctx context.Context, req *kvpb.ClientRequest) (*kvpb.ClientResponse, error) {
	return &kvpb.ClientResponse{Header: hdr, Result: n.result(ctx, req.GetOp())}, nil
}

func (n *authNode) Batch(ctx context.Context, req *kvpb.ClientBatchRequest) (*kvpb.ClientBatchResponse, error) {
	resp := &kvpb.ClientBatchResponse{Header: hdr}
	for _, op := range req.GetOps() {
		resp.Results = append(resp.Results, n.result(ctx, op))
	}
	return resp, nil
}

func (n *authNode) List(ctx context.Context, _ *kvpb.ClientListRequest) (*kvpb.ClientListResponse, error) {
	if !n.allow(ctx) {
		return &kvpb.ClientListResponse{Header: hdr, Error: kvpb.ErrorCode_ERROR_CODE_UNAUTHENTICATED, Message: "fake: unauthenticated"}, nil
	}
	return &kvpb.ClientListResponse{Header: hdr}, nil
}

// Pipe answers each message's operations, in order, with the token the
// stream opened with.
func (n *authNode) Pipe(stream kvpb.DRPCClient_PipeStream) error {
	n.set(func(n *authNode) { n.streams++ })
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			n.set(func(n *authNode) { n.ended++ })
			return nil
		}
		if err != nil {
			return err //nolint:wrapcheck // test server
		}
		resp := &kvpb.ClientPipeResponse{Header: hdr}
		for _, op := range req.GetOps() {
			resp.Results = append(resp.Results, &kvpb.ClientPipeResult{Id: op.GetId(), Result: n.result(stream.Context(), op.GetOp())})
		}
		if err := stream.Send(resp); err != nil {
			return err //nolint:wrapcheck // test server
		}
		if err := rpcconn.Flush(stream); err != nil {
			return err //nolint:wrapcheck // test server
		}
	}
}

// authClient returns a fake node and a Client of it logging in as user
// with password. The fake serves plain TCP, so the credentials are set
// past Validate, which wants TLS for them.
func authClient(t *testing.T, user, password string) (*authNode, *Client) {
	t.Helper()
	n := &authNode{valid: map[string]bool{}}
	// BackoffMax one minute: a refused login is remembered that long.
	c, err := newClient([]string{serveClient(t, n)}, []Option{WithRetry(4, time.Millisecond, time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	c.creds = &credentials{user: user, password: password}
	t.Cleanup(func() { _ = c.Close() })
	return n, c
}

// allPaths runs a Get (coalesced lane), a Set (pipe), a Batch and a List
// and returns their errors.
func allPaths(ctx context.Context, c *Client) map[string]error {
	res := c.Batch(ctx, []Op{SetOp("b", []byte("v")), GetOp("b")})
	_, getErr := c.Get(ctx, "k")
	_, listErr := c.List(ctx, "")
	return map[string]error{
		"get": getErr, "set": c.Set(ctx, "k", []byte("v")), "batch set": res[0].Err, "batch get": res[1].Err, "list": listErr,
	}
}

func wantAll(t *testing.T, what string, errs map[string]error, want error) {
	t.Helper()
	for path, err := range errs {
		if (want == nil && err != nil) || (want != nil && !errors.Is(err, want)) {
			t.Fatalf("%s: %s: got %v, want %v", what, path, err, want)
		}
	}
}

// TestLoginOnce: concurrent first calls share one login, and every call
// carries its token.
func TestLoginOnce(t *testing.T) {
	n, c := authClient(t, "u", "pw")
	ctx := t.Context()
	var wg sync.WaitGroup
	errs := make([]error, 32)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if i%2 == 0 {
				_, errs[i] = c.Get(ctx, fmt.Sprint("k", i))
			} else {
				errs[i] = c.Set(ctx, fmt.Sprint("k", i), []byte("v"))
			}
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	wantAll(t, "after login", allPaths(ctx, c), nil)
	if got := n.counts(); got.logins != 1 || got.unauth != 0 {
		t.Fatalf("got %+v, want one login and no refusal", got)
	}
	for _, tok := range n.allowed {
		if tok != "t1" {
			t.Fatalf("an operation carried %q, want t1", tok)
		}
	}
}

// TestTokenRenewedBeforeExpiry: a token past 80% of its life is renewed
// in the background while calls go on with it; the pipe then moves to a
// new stream with the new token after the node answered the old one's
// operations; no call is refused on the way.
func TestTokenRenewedBeforeExpiry(t *testing.T) {
	n, c := authClient(t, "u", "pw")
	ctx := t.Context()
	if err := c.Set(ctx, "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	// Age the token: due for renewal, still valid.
	due := *c.creds.cur.Load()
	due.renewAt = time.Now().Add(-time.Second)
	c.creds.cur.Store(&due)
	wantAll(t, "renewal due", allPaths(ctx, c), nil) // opens a stream with the aged token
	poll(t, "the renewal", func() error {
		if tok := c.creds.cur.Load(); tok.header != "Bearer t2" {
			return fmt.Errorf("token %q", tok.header)
		}
		return nil
	})
	wantAll(t, "renewed", allPaths(ctx, c), nil)
	got := n.counts()
	if got.logins != 2 || got.unauth != 0 || got.ended < 1 || got.streams != got.ended+1 {
		t.Fatalf("got %+v, want two logins, no refusal, every stream but the last closed by the client", got)
	}
	if tok := n.lastToken(); tok != "t2" {
		t.Fatalf("last operation carried %q, want t2", tok)
	}
}

// TestRefusedTokenRenewedOnce: an UNAUTHENTICATED answer renews the token
// and tries once more, on every path; a token refused again fails the
// call with ErrUnauthenticated.
func TestRefusedTokenRenewedOnce(t *testing.T) {
	n, c := authClient(t, "u", "pw")
	ctx := t.Context()
	wantAll(t, "first", allPaths(ctx, c), nil)
	for _, path := range []string{"get", "set", "batch", "list"} {
		t.Run(path, func(t *testing.T) {
			n.set(func(n *authNode) { clear(n.valid) }) // the password changed, say
			before := n.counts()
			var err error
			switch path {
			case "get":
				_, err = c.Get(ctx, "k")
			case "set":
				err = c.Set(ctx, "k", []byte("v"))
			case "batch":
				err = c.Batch(ctx, []Op{SetOp("k", []byte("v"))})[0].Err
			case "list":
				_, err = c.List(ctx, "")
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := n.counts(); got.logins != before.logins+1 || got.unauth != before.unauth+1 {
				t.Fatalf("got %+v after %+v, want one login and one refusal more", got, before)
			}
		})
	}
	n.set(func(n *authNode) { n.refuse = true })
	before := n.counts()
	if err := c.Set(ctx, "k", []byte("v")); !errors.Is(err, ErrUnauthenticated) {
		t.Fatalf("token always refused: got %v, want ErrUnauthenticated", err)
	}
	if got := n.counts(); got.logins != before.logins+1 || got.unauth != before.unauth+2 {
		t.Fatalf("token always refused: got %+v after %+v, want one login and two refusals more", got, before)
	}
}

// TestLoginRefused: a wrong password fails every call with
// ErrUnauthenticated, and is not tried again for BackoffMax.
func TestLoginRefused(t *testing.T) {
	n, c := authClient(t, "u", "wrong")
	ctx := t.Context()
	wantAll(t, "wrong password", allPaths(ctx, c), ErrUnauthenticated)
	wantAll(t, "again", allPaths(ctx, c), ErrUnauthenticated)
	if got := n.counts(); got.logins != 1 || got.unauth != 0 {
		t.Fatalf("got %+v, want one login and nothing sent", got)
	}
}

// TestLoginWhileAuthDisabled: while the node says authentication is off,
// calls carry no token; once it is on, the first refusal logs in.
func TestLoginWhileAuthDisabled(t *testing.T) {
	n, c := authClient(t, "u", "pw")
	ctx := t.Context()
	n.set(func(n *authNode) { n.off = true })
	wantAll(t, "off", allPaths(ctx, c), nil)
	if tok := n.lastToken(); tok != "" || c.creds.cur.Load() != tokenOff {
		t.Fatalf("with authentication off: operations carried %q", tok)
	}
	n.set(func(n *authNode) { n.off = false })
	wantAll(t, "on", allPaths(ctx, c), nil)
	if got := n.counts(); got.logins != 2 {
		t.Fatalf("got %+v, want two logins", got)
	}
	if tok := n.lastToken(); tok != "t2" {
		t.Fatalf("after enabling: last operation carried %q, want t2", tok)
	}
}

// TestWithToken: the header replaces the context's metadata without
// writing into the caller's map.
func TestWithToken(t *testing.T) {
	parent := drpcmetadata.Add(context.Background(), "trace", "x")
	ctx := withToken(parent, &token{header: "Bearer t"})
	md, _ := drpcmetadata.Get(ctx)
	if len(md) != 1 || md[authHeader] != "Bearer t" {
		t.Fatalf("metadata %v, want only the token", md)
	}
	if pmd, _ := drpcmetadata.Get(parent); len(pmd) != 1 || pmd["trace"] != "x" {
		t.Fatalf("the caller's metadata became %v", pmd)
	}
	for _, tok := range []*token{nil, tokenOff} {
		if got := withToken(parent, tok); got != parent {
			t.Fatalf("token %v: got a new context", tok)
		}
	}
}
