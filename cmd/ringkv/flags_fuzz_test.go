package main

import (
	"errors"
	"strings"
	"testing"
)

// FuzzParseOverrides: --chaos-dial-overrides (and splitList under it, which
// every comma-separated flag uses). Either a usage error or a map whose
// every entry names a peer and an address.
func FuzzParseOverrides(f *testing.F) {
	for _, s := range []string{"n2=127.0.0.1:1234,n3=127.0.0.1:5", "", ",,", "=x", "n2=", "a=b=c, d=e "} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		m, err := parseOverrides(s)
		if err != nil {
			if !errors.Is(err, errUsage) {
				t.Fatalf("%q: error %v is not a usage error", s, err)
			}
			return
		}
		for id, addr := range m {
			if id == "" || addr == "" || strings.Contains(id, ",") {
				t.Fatalf("%q: entry %q=%q", s, id, addr)
			}
		}
	})
}
