package promreg

import (
	"errors"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func counter(name string) prometheus.Counter {
	return prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: name})
}

func TestRegisterAllOrNone(t *testing.T) {
	reg := prometheus.NewRegistry()
	taken := counter("b_total")
	if err := reg.Register(taken); err != nil {
		t.Fatal(err)
	}
	a, b, c := counter("a_total"), counter("b_total"), counter("c_total")
	_, err := Register(reg, a, b, c)
	var are prometheus.AlreadyRegisteredError
	if !errors.As(err, &are) {
		t.Fatalf("got %v, want AlreadyRegisteredError", err)
	}
	// Nothing of the failed set stays: a is free again, c never went in.
	if n, err := testutil.GatherAndCount(reg); err != nil || n != 1 {
		t.Fatalf("after a refused set: %d metrics (%v), want only the one there before", n, err)
	}
	if err := reg.Register(a); err != nil {
		t.Fatalf("a left registered by the failed set: %v", err)
	}
	reg.Unregister(a)

	// Registered, unregistered (twice), then registered again.
	reg.Unregister(taken)
	s, err := Register(reg, a, b, c)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := testutil.GatherAndCount(reg); err != nil || n != 3 {
		t.Fatalf("registered: %d metrics (%v), want 3", n, err)
	}
	s.Unregister()
	s.Unregister()
	if n, err := testutil.GatherAndCount(reg); err != nil || n != 0 {
		t.Fatalf("unregistered: %d metrics (%v), want 0", n, err)
	}
	if _, err := Register(reg, a, b, c); err != nil {
		t.Fatalf("registering again after Unregister: %v", err)
	}
}

func TestRegisterNil(t *testing.T) {
	s, err := Register(nil, counter("a_total"))
	if err != nil {
		t.Fatal(err)
	}
	s.Unregister()
	var none *Set
	none.Unregister()
}
