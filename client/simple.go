package client

import "context"

// Simple is the string-valued client of ringkv's original specification:
//
//	c, err := client.NewClient([]string{"127.0.0.1:9001", "127.0.0.1:9002"})
//	if err != nil { ... }
//	defer c.Close()
//	err := c.Set("hello", "world")
//	v, err := c.Get("hello")
//	err = c.Delete("hello")
//
// Every call runs at quorum with the default RequestTimeout; Get of an
// absent key returns ErrNotFound. It is safe for concurrent use. For
// contexts, levels, compare-and-set, async and batch calls use Client
// (Simple.Client returns the one underneath).
type Simple struct {
	c *Client
}

// NewClient returns a Simple client for the cluster reachable at nodes
// (drpc addresses of any of its nodes). It does not contact the cluster:
// the topology is learned on first use, and until then calls go to the
// given nodes, any of which can serve them. Bad arguments (no address, an
// invalid option) return an error wrapping ErrInvalidArgument and a nil
// client.
func NewClient(nodes []string, opts ...Option) (*Simple, error) {
	c, err := newClient(nodes, opts)
	if err != nil {
		return nil, err
	}
	c.requestRefresh()
	return &Simple{c: c}, nil
}

// Client returns the Client underneath.
func (s *Simple) Client() *Client { return s.c }

// Set stores value under key. Errors are those of Client.Set.
func (s *Simple) Set(key, value string) error {
	return s.c.Set(context.Background(), key, []byte(value))
}

// Get returns key's value, or ErrNotFound. Errors are those of Client.Get.
func (s *Simple) Get(key string) (string, error) {
	v, err := s.c.Get(context.Background(), key)
	return string(v), err
}

// Delete removes key. Errors are those of Client.Delete.
func (s *Simple) Delete(key string) error {
	return s.c.Delete(context.Background(), key)
}

// List returns the pairs whose keys start with prefix (at most 1000).
// Errors are those of Client.List.
func (s *Simple) List(prefix string) (map[string]string, error) {
	kvs, err := s.c.List(context.Background(), prefix)
	if err != nil {
		return nil, err
	}
	out := make(map[string]string, len(kvs))
	for _, kv := range kvs {
		out[kv.Key] = string(kv.Value)
	}
	return out, nil
}

// Close releases the client's connections.
func (s *Simple) Close() error {
	return s.c.Close()
}
