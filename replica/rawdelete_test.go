package replica

import (
	"context"
	"errors"
	"maps"
	"testing"
)

func TestDeleteRaw(t *testing.T) {
	s := openTest(t, nil)
	mustWriteRaw(t, s, []KV{kv("h1", "a"), kv("h2", "b"), kv("h3", "c"), kv("h4", "d")})
	keys := [][]byte{[]byte("h1"), []byte("h3"), []byte("h9")} // h9 is absent: not an error
	if err := s.DeleteRaw(context.Background(), keys); err != nil {
		t.Fatalf("DeleteRaw: got %v, want nil", err)
	}
	keys[0][1] = '2' // DeleteRaw copied its input: changing it now deletes nothing
	got := rawContents(t, s, "h")
	want := map[string]string{"h2": "b", "h4": "d"}
	if !maps.Equal(got, want) {
		t.Fatalf("after DeleteRaw: got %v, want %v", got, want)
	}
	if err := s.DeleteRaw(context.Background(), nil); err != nil {
		t.Fatalf("DeleteRaw(nil): got %v, want nil", err)
	}
}

func TestDeleteRawRejects(t *testing.T) {
	s := openTest(t, nil)
	mustWriteRaw(t, s, []KV{kv("h1", "a")})
	for _, tc := range []struct {
		name string
		key  []byte
	}{
		{"empty", nil},
		{"record namespace", []byte("r1")},
		{"badger namespace", []byte("!badger!head")},
		{"too long", append([]byte("h"), make([]byte, MaxKeyBytes)...)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := s.DeleteRaw(context.Background(), [][]byte{[]byte("h1"), tc.key})
			if !errors.Is(err, ErrInvalidEntry) {
				t.Fatalf("got %v, want ErrInvalidEntry", err)
			}
			if _, err := s.GetRaw([]byte("h1")); err != nil {
				t.Fatalf("h1 after rejected DeleteRaw: got %v, want it kept", err)
			}
		})
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.DeleteRaw(ctx, [][]byte{[]byte("h1")}); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled ctx: got %v, want context.Canceled", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteRaw(context.Background(), [][]byte{[]byte("h1")}); !errors.Is(err, ErrClosed) {
		t.Fatalf("after Close: got %v, want ErrClosed", err)
	}
}
