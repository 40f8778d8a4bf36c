//go:build race

package ring

// The race detector (with -cover, atomic counters) slows the claim ~100x;
// the randomized tests run fewer seeds under it.
const raceEnabled = true
