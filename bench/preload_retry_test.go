package bench

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/ringkv/ringkv/client"
)

// failingPutter fails its first n PutBatch calls with err.
type failingPutter struct {
	n, calls int
	err      error
}

func (p *failingPutter) PutBatch(context.Context, []string, [][]byte, string) error {
	p.calls++
	if p.calls <= p.n {
		return p.err
	}
	return nil
}

// TestPreloadBatchRetries: a batch refused as overloaded is tried again,
// after a backoff, well past the five tries of other failures; other
// failures and endless refusals still end with an error.
func TestPreloadBatchRetries(t *testing.T) {
	s := DefaultSpec()
	over := fmt.Errorf("set: %w", client.ErrOverloaded)
	other := errors.New("replica write timed out")
	ctx := t.Context()
	for _, tc := range []struct {
		name      string
		p         *failingPutter
		wantCalls int
		wantErr   bool
	}{
		{"refused 20 times", &failingPutter{n: 20, err: over}, 21, false},
		{"failed 4 times", &failingPutter{n: 4, err: other}, 5, false},
		{"failed 5 times", &failingPutter{n: 5, err: other}, preloadAttempts, true},
		{"refused for ever", &failingPutter{n: 1 << 30, err: over}, preloadOverloadAttempts, true},
	} {
		err := putBatchRetryingWith(ctx, tc.p, []string{"k"}, [][]byte{{'v'}}, s, time.Millisecond)
		if (err != nil) != tc.wantErr || tc.p.calls != tc.wantCalls {
			t.Errorf("%s: %d calls, err %v; want %d calls, error %v", tc.name, tc.p.calls, err, tc.wantCalls, tc.wantErr)
		}
	}
}
