package replica

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeTime is an injectable wall clock.
type fakeTime struct{ ns atomic.Int64 }

func newFakeTime(t time.Time) *fakeTime {
	f := &fakeTime{}
	f.ns.Store(t.UnixNano())
	return f
}

func (f *fakeTime) now() time.Time      { return time.Unix(0, f.ns.Load()) }
func (f *fakeTime) add(d time.Duration) { f.ns.Add(int64(d)) }

func TestClockNowUsesInjectedTime(t *testing.T) {
	ft := newFakeTime(t0)
	c := NewClock(ft.now, 0)
	ts := c.Now()
	if got, want := ts.WallTime(), t0.Truncate(time.Millisecond); !got.Equal(want) {
		t.Errorf("WallTime: got %v, want %v", got, want)
	}
	if got, want := ts.Logical(), uint16(0); got != want {
		t.Errorf("Logical: got %d, want %d", got, want)
	}
	if got, want := c.Now(), ts+1; got != want {
		t.Errorf("Now with a stopped clock: got %v, want %v", got, want)
	}
	ft.add(-time.Second) // wall clock steps back
	if got, want := c.Now(), ts+2; got != want {
		t.Errorf("Now after the wall clock went back: got %v, want %v", got, want)
	}
	ft.add(2 * time.Second)
	if got, want := c.Now(), MakeTimestamp(ft.now(), 0); got != want {
		t.Errorf("Now after the wall clock passed: got %v, want %v", got, want)
	}
}

func TestClockMonotonicUnderConcurrency(t *testing.T) {
	ft := newFakeTime(t0)
	c := NewClock(ft.now, 0)
	const goroutines, perG = 16, 2000
	got := make([][]Timestamp, goroutines)
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range perG {
				if i%100 == 0 {
					ft.add(time.Millisecond / 3)
				}
				got[g] = append(got[g], c.Now())
			}
		})
	}
	wg.Wait()
	seen := make(map[Timestamp]bool, goroutines*perG)
	for g, ts := range got {
		for i, x := range ts {
			if i > 0 && x <= ts[i-1] {
				t.Fatalf("goroutine %d: Now %d = %v, want > %v", g, i, x, ts[i-1])
			}
			if seen[x] {
				t.Fatalf("goroutine %d: Now returned %v twice", g, x)
			}
			seen[x] = true
		}
	}
}

func TestClockUpdate(t *testing.T) {
	tests := []struct {
		name      string
		maxOffset time.Duration
		ahead     time.Duration // remote wall time minus local
		logical   uint16
		wantErr   error
	}{
		{"behind", 0, -time.Second, 5, nil},
		{"slightly ahead", 0, 100 * time.Millisecond, 9, nil},
		{"at the default offset", 0, DefaultMaxClockOffset, 0, nil},
		{"beyond the default offset", 0, DefaultMaxClockOffset + time.Millisecond, 0, ErrClockOffset},
		{"beyond a custom offset", 10 * time.Millisecond, 20 * time.Millisecond, 0, ErrClockOffset},
		{"within a custom offset", time.Minute, 30 * time.Second, 0, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ft := newFakeTime(t0)
			c := NewClock(ft.now, tc.maxOffset)
			before := c.Now()
			remote := MakeTimestamp(t0.Add(tc.ahead), tc.logical)
			err := c.Update(remote)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Update: got %v, want %v", err, tc.wantErr)
			}
			next := c.Now()
			if next <= before {
				t.Errorf("Now after Update: got %v, want > %v", next, before)
			}
			if tc.wantErr == nil && next <= remote {
				t.Errorf("Now after Update: got %v, want > remote %v", next, remote)
			}
			if tc.wantErr != nil && next >= remote {
				t.Errorf("Now after a refused Update: got %v, want < remote %v", next, remote)
			}
		})
	}
}

func TestNewClockDefaults(t *testing.T) {
	c := NewClock(nil, 0)
	if got, want := c.maxOffset, DefaultMaxClockOffset; got != want {
		t.Errorf("maxOffset: got %v, want %v", got, want)
	}
	if d := time.Since(c.Now().WallTime()); d < -time.Second || d > time.Minute {
		t.Errorf("Now with time.Now: got %v from the wall clock, want about 0", d)
	}
}

func TestClockPhysical(t *testing.T) {
	at := time.Unix(1_800_000_000, 0)
	c := NewClock(func() time.Time { return at }, 0)
	if got := c.Physical(); !got.Equal(at) {
		t.Fatalf("Physical: %s, want %s", got, at)
	}
}
