package main

import (
	"errors"
	"runtime/debug"
	"testing"
)

func TestParseByteSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
	}{
		{"256MiB", 256 << 20},
		{"1GiB", 1 << 30},
		{"64 MiB", 64 << 20},
		{"500MB", 500_000_000},
		{"2KiB", 2048},
		{"1TiB", 1 << 40},
		{"3GB", 3_000_000_000},
		{"7KB", 7000},
		{"1TB", 1_000_000_000_000},
		{"123B", 123},
		{"4096", 4096},
		{"0", 0},
	} {
		got, err := parseByteSize(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("parseByteSize(%q): got %d, %v; want %d, nil", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", "MiB", "lots", "1.5GiB", "-1MiB", "12XB", "1 GiBs", "9999999999TiB", "0x10MiB"} {
		if got, err := parseByteSize(bad); !errors.Is(err, errByteSize) {
			t.Errorf("parseByteSize(%q): got %d, %v; want an error wrapping errByteSize", bad, got, err)
		}
	}
	var b byteSize
	if err := b.Set("2MiB"); err != nil || b.String() != "2097152" {
		t.Errorf("byteSize.Set(2MiB): got %s, %v; want 2097152, nil", b.String(), err)
	}
}

func TestSetMemoryLimit(t *testing.T) {
	prev := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(prev) })
	t.Setenv("GOMEMLIMIT", "")
	if got := setMemoryLimit(0, 3); got != 0 {
		t.Errorf("no budget: got limit %d, want 0", got)
	}
	if got := setMemoryLimit(256<<20, 3); got != 768<<20 || debug.SetMemoryLimit(-1) != 768<<20 {
		t.Errorf("256MiB x 3 nodes: got limit %d, want %d", got, 768<<20)
	}
	t.Setenv("GOMEMLIMIT", "1GiB")
	if got := setMemoryLimit(256<<20, 1); got != 0 {
		t.Errorf("with GOMEMLIMIT set: got limit %d, want 0 (the operator's)", got)
	}
}
