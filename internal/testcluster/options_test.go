package testcluster

import (
	"context"
	"net/http"
	"testing"
	"time"
)

// TestStartOptionsSpareAndPause grows a cluster by a spare, which
// StartOptions prepared but did not start, and pauses and resumes a node:
// the helpers the chaos harness is built on.
func TestStartOptionsSpareAndPause(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	prepared := 0
	c := StartOptions(t, Options{Nodes: 2, Spares: 1, NoRace: true, Args: []string{"--partitions", "8"},
		Prepare: func(nodes []*Node) { prepared = len(nodes) }})
	if prepared != 3 || len(c.Nodes) != 3 {
		t.Fatalf("Prepare saw %d nodes, cluster has %d; want 3 each", prepared, len(c.Nodes))
	}
	n1, n3 := c.Nodes[0], c.Nodes[2]
	n3.Start() // the spare joins through n1 and n2
	c.WaitConverged(60 * time.Second)
	ctx := t.Context()
	if code, err := n3.Set(ctx, "spare", "v", "quorum"); err != nil || code != http.StatusOK {
		t.Fatalf("write through the spare: %d %v", code, err)
	}
	n3.Pause()
	short, cancel := context.WithTimeout(ctx, 2*time.Second)
	_, code, err := n3.Get(short, "spare", "one")
	cancel()
	if err == nil && code == http.StatusOK {
		t.Fatal("a paused node answered")
	}
	n3.Resume()
	c.WaitFor(30*time.Second, "the resumed node to answer", func(ctx context.Context) error {
		_, _, err := n3.Get(ctx, "spare", "quorum")
		return err
	})
	if got, code, err := n1.Get(ctx, "spare", "quorum"); err != nil || code != http.StatusOK || got != "v" {
		t.Fatalf("read back: %q %d %v", got, code, err)
	}
	if BinaryNoRace(t) == "" {
		t.Fatal("no binary")
	}
}
