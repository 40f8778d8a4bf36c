package client

import "context"

// Future is the pending result of an Async call. It is safe for
// concurrent use.
type Future[T any] struct {
	done chan struct{} // closed by the call's goroutine when val and err are set
	val  T
	err  error
}

// Done returns a channel closed once the result is ready.
func (f *Future[T]) Done() <-chan struct{} { return f.done }

// Wait blocks until the result is ready and returns it. The call ends by
// its context's deadline (RequestTimeout when it has none) or Close, so
// Wait does not block forever.
func (f *Future[T]) Wait() (T, error) {
	<-f.done
	return f.val, f.err
}

// async runs fn on a goroutine tracked by c (Close waits for it).
func async[T any](c *Client, fn func() (T, error)) *Future[T] {
	f := &Future[T]{done: make(chan struct{})}
	if !c.wg.Go(func() {
		defer close(f.done)
		f.val, f.err = fn()
	}) {
		f.err = ErrClosed
		close(f.done)
	}
	return f
}

// GetAsync is Get returning at once; the Future yields Get's results.
func (c *Client) GetAsync(ctx context.Context, key string, opts ...CallOption) *Future[[]byte] {
	return async(c, func() ([]byte, error) { return c.Get(ctx, key, opts...) })
}

// SetAsync is Set returning at once; the Future yields Set's error.
func (c *Client) SetAsync(ctx context.Context, key string, value []byte, opts ...CallOption) *Future[struct{}] {
	return async(c, func() (struct{}, error) { return struct{}{}, c.Set(ctx, key, value, opts...) })
}

// DeleteAsync is Delete returning at once; the Future yields Delete's
// error.
func (c *Client) DeleteAsync(ctx context.Context, key string, opts ...CallOption) *Future[struct{}] {
	return async(c, func() (struct{}, error) { return struct{}{}, c.Delete(ctx, key, opts...) })
}

// ListAsync is List returning at once; the Future yields List's results.
func (c *Client) ListAsync(ctx context.Context, prefix string, opts ...CallOption) *Future[[]KV] {
	return async(c, func() ([]KV, error) { return c.List(ctx, prefix, opts...) })
}

// CompareAndSetAsync is CompareAndSet returning at once; the Future yields
// its error.
func (c *Client) CompareAndSetAsync(ctx context.Context, key string, expected, value []byte, opts ...CallOption) *Future[struct{}] {
	return async(c, func() (struct{}, error) {
		return struct{}{}, c.CompareAndSet(ctx, key, expected, value, opts...)
	})
}

// PutIfAbsentAsync is PutIfAbsent returning at once; the Future yields its
// error.
func (c *Client) PutIfAbsentAsync(ctx context.Context, key string, value []byte, opts ...CallOption) *Future[struct{}] {
	return async(c, func() (struct{}, error) { return struct{}{}, c.PutIfAbsent(ctx, key, value, opts...) })
}
