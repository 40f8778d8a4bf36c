// Package promreg registers a component's Prometheus collectors all or
// none, and unregisters them when the component closes, so that it can be
// opened again on the same Registerer (a store reopened, a node restarted
// in a test).
package promreg

import "github.com/prometheus/client_golang/prometheus"

// Set is collectors registered together on one Registerer.
type Set struct {
	reg prometheus.Registerer
	cs  []prometheus.Collector
}

// Register registers cs on reg, all or none: on the first refusal it
// unregisters those it had registered and returns the refusal (a
// prometheus.AlreadyRegisteredError when a collector of the same
// description is there). A nil reg registers nothing: the collectors
// still count, unexported.
func Register(reg prometheus.Registerer, cs ...prometheus.Collector) (*Set, error) {
	if reg == nil {
		return &Set{}, nil
	}
	for i, c := range cs {
		if err := reg.Register(c); err != nil {
			for _, done := range cs[:i] {
				reg.Unregister(done)
			}
			return nil, err //nolint:wrapcheck // the caller names what it registered
		}
	}
	return &Set{reg: reg, cs: cs}, nil
}

// Unregister removes the set's collectors from its Registerer. It may be
// called on a nil Set and more than once.
func (s *Set) Unregister() {
	if s == nil || s.reg == nil {
		return
	}
	for _, c := range s.cs {
		s.reg.Unregister(c)
	}
	s.reg = nil
}
