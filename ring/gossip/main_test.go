package gossip

import (
	"fmt"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// leakGrace bounds how long goroutines may outlive the tests. memberlist's
// Shutdown does not wait for an in-flight probe (probeNode and its TCP
// fallback ping), which ends on its own within ProbeInterval (1s under the
// Local profile); goleak's own retries give up sooner, so poll a little
// longer instead of ignoring memberlist functions.
const leakGrace = 10 * time.Second

func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		deadline := time.Now().Add(leakGrace)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			err := goleak.Find()
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				fmt.Fprintf(os.Stderr, "goleak: goroutines still running %s after the tests: %v\n", leakGrace, err)
				code = 1
				break
			}
			<-tick.C // polling with a deadline: nothing to wait on
		}
	}
	os.Exit(code)
}
