package loglimit

import (
	"fmt"
	"testing"
	"time"
)

func TestLimiter(t *testing.T) {
	var l Limiter
	now := time.Now()
	if !l.Allow("10.0.0.1:5", now) || l.Allow("10.0.0.1:6", now.Add(time.Second)) || !l.Allow("10.0.0.2:5", now) || !l.Allow("10.0.0.1:7", now.Add(61*time.Second)) {
		t.Fatal("want one line a minute per host")
	}
	if !l.Allow("not an address", now) || l.Allow("not an address", now) {
		t.Fatal("a peer that is not host:port counts as its own host")
	}
	for i := range maxHosts + 2 {
		l.Allow(fmt.Sprintf("10.1.%d.%d:1", i/256, i%256), now)
	}
	if len(l.last) > maxHosts+1 {
		t.Fatalf("%d hosts remembered, want at most %d", len(l.last), maxHosts+1)
	}
}
