package node

import (
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ringkv/ringkv/ring"
	"github.com/ringkv/ringkv/ring/gossip"
)

// postJSON sends POST url and decodes the JSON answer into v; it returns
// the status code.
func postJSON(t *testing.T, url string, v any) int {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }() // read fully below
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v in %q", url, err, b)
	}
	return resp.StatusCode
}

// waitUntil polls cond every 20ms until it holds, failing after timeout.
func waitUntil(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		tick := time.NewTimer(20 * time.Millisecond)
		<-tick.C
	}
}

// TestClusterAdmin drives the /api/cluster endpoints of a three-node
// cluster: status until converged, input errors, leave and admit, and the
// refusal of a remove that would leave partitions without a live majority.
func TestClusterAdmin(t *testing.T) {
	nodes := startCluster(t, 3)
	base := func(i int) string { return "http://" + nodes[i].HTTPAddr() + "/api/cluster/" }

	// Status: every node converges to three voters per partition.
	var st ClusterStatus
	waitUntil(t, 60*time.Second, "every node to report converged", func() bool {
		for i := range nodes {
			if code := getJSON(t, base(i)+"status", &st); code != http.StatusOK || !st.Converged {
				return false
			}
		}
		return true
	})
	if st.NodeID != "n3" || st.PartitionCount != 64 || st.ReplicationFactor != 3 || len(st.Members) != 3 || len(st.Partitions) != 64 {
		t.Fatalf("status: got %+v", st)
	}
	leaders := 0
	for _, ps := range st.Partitions {
		if !ps.Hosted || !ps.Converged || len(ps.Preference) != 3 || !sameMembers(ps.Voters, ps.Preference) {
			t.Fatalf("partition %d: got %+v, want hosted and converged", ps.Partition, ps)
		}
		if ps.Leader == "n3" {
			leaders++
		}
	}
	t.Logf("n3 leads %d of 64 groups", leaders)

	// Input errors.
	for _, tc := range []struct {
		name, method, path string
		want               int
	}{
		{"missing id", http.MethodPost, "remove", http.StatusBadRequest},
		{"blank id", http.MethodPost, "leave?id=%20", http.StatusBadRequest},
		{"unknown id", http.MethodPost, "remove?id=n9", http.StatusNotFound},
		{"unknown id admit", http.MethodPost, "admit?id=n9", http.StatusNotFound},
		{"get on a change", http.MethodGet, "remove?id=n1", http.StatusMethodNotAllowed},
		{"post on status", http.MethodPost, "status", http.StatusMethodNotAllowed},
		{"unknown endpoint", http.MethodGet, "nope", http.StatusNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out map[string]string
			var code int
			if tc.method == http.MethodGet {
				code = getJSON(t, base(0)+tc.path, &out)
			} else {
				code = postJSON(t, base(0)+tc.path, &out)
			}
			if code != tc.want || out["error"] == "" {
				t.Fatalf("got %d %v, want %d with an error", code, out, tc.want)
			}
		})
	}

	// Leave then admit: with everyone alive both are allowed.
	var ok struct {
		ChangeAnswer
		Error string `json:"error"`
	}
	if code := postJSON(t, base(0)+"leave?id=n2", &ok); code != http.StatusOK || !ok.OK {
		t.Fatalf("leave n2: got %d %+v, want 200", code, ok)
	}
	if m, _ := nodes[0].Gossip().Ring().Member("n2"); m.Status != ring.Leaving {
		t.Fatalf("after leave: n2 is %v, want leaving", m.Status)
	}
	if code := postJSON(t, base(0)+"leave?id=n2", &ok); code != http.StatusConflict {
		t.Fatalf("second leave n2: got %d %+v, want 409", code, ok)
	}
	if code := postJSON(t, base(1)+"admit?id=n2", &ok); code != http.StatusOK || !ok.OK || ok.Noop {
		t.Fatalf("admit n2: got %d %+v, want 200 with a change", code, ok)
	}
	if m, _ := nodes[1].Gossip().Ring().Member("n2"); m.Status != ring.Joined {
		t.Fatalf("after admit: n2 is %v, want joined", m.Status)
	}
	admitted := ok.RingVersion
	if code := postJSON(t, base(2)+"admit?id=n2", &ok); code != http.StatusOK || !ok.Noop || ok.RingVersion != admitted || !strings.Contains(ok.Detail, "already joined") {
		t.Fatalf("second admit n2: got %d %+v, want 200, a no-op at version %d", code, ok, admitted)
	}
	// Every member comes to advertise the ring it holds.
	waitUntil(t, 30*time.Second, "every member to advertise the newest ring", func() bool {
		for i := range nodes {
			if getJSON(t, base(i)+"status", &st) != http.StatusOK {
				return false
			}
			for _, m := range st.Members {
				if m.RingVersion != admitted {
					return false
				}
			}
		}
		return true
	})

	// The groups take n2 back as a voter before n3 stops: ring changes are
	// decided by the Raft group of the ring record's partition, which
	// needs a majority of its voters alive, as every group does.
	waitUntil(t, 60*time.Second, "every node to report converged again", func() bool {
		for i := range nodes {
			if code := getJSON(t, base(i)+"status", &st); code != http.StatusOK || !st.Converged {
				return false
			}
		}
		return true
	})

	// n3 stops: removing n2 would leave every partition with n1 and the
	// dead n3, one live replica of two.
	if err := nodes[2].Close(); err != nil {
		t.Fatal(err)
	}
	// Both n1 and n2 judge the requests below, each from its own view.
	waitUntil(t, 30*time.Second, "n1 and n2 to see n3 dead", func() bool {
		for _, n := range nodes[:2] {
			if info, found := n.Gossip().Member("n3"); !found || info.Liveness != gossip.Dead {
				return false
			}
		}
		return true
	})
	// Ring changes are decided by the Raft group of the ring record's
	// partition: wait until it has a leader again if n3 led it.
	ringPart := nodes[0].Gossip().Ring().PartitionOf(ringKey)
	waitUntil(t, 60*time.Second, "the ring record's group to have a live leader", func() bool {
		st := nodes[0].ClusterStatus()
		l := st.Partitions[ringPart].Leader
		return l == "n1" || l == "n2"
	})
	versionBefore := nodes[0].Gossip().Ring().Version()
	var refused map[string]string
	if code := postJSON(t, base(0)+"remove?id=n2", &refused); code != http.StatusConflict || !strings.Contains(refused["error"], "majority") {
		t.Fatalf("remove n2 with n3 dead: got %d %v, want 409 naming partitions", code, refused)
	}
	if code := postJSON(t, base(1)+"leave?id=n1", &refused); code != http.StatusConflict {
		t.Fatalf("leave n1 with n3 dead: got %d %v, want 409", code, refused)
	}
	if v := nodes[0].Gossip().Ring().Version(); v != versionBefore {
		t.Fatalf("a refused change moved the ring from version %d to %d", versionBefore, v)
	}
	// Removing the dead member itself is what an operator wants.
	if code := postJSON(t, base(0)+"remove?id=n3", &ok); code != http.StatusOK {
		t.Fatalf("remove n3: got %d %+v, want 200", code, ok)
	}
	if code := postJSON(t, base(0)+"remove?id=n3", &ok); code != http.StatusConflict {
		t.Fatalf("second remove n3: got %d %+v, want 409", code, ok)
	}
	if code := postJSON(t, base(0)+"admit?id=n3", &ok); code != http.StatusConflict || !strings.Contains(ok.Error, "not alive") {
		t.Fatalf("admit dead n3: got %d %+v, want 409 not alive", code, ok)
	}
	if ps := nodes[0].Gossip().Ring().PartitionsOf("n3"); len(ps) != 0 {
		t.Fatalf("partitions %v still list n3 after its removal", ps)
	}
}

func TestClusterAdminLastMember(t *testing.T) {
	nodes := startCluster(t, 1)
	var out map[string]string
	for _, op := range []string{"remove", "leave"} {
		code := postJSON(t, "http://"+nodes[0].HTTPAddr()+"/api/cluster/"+op+"?id=n1", &out)
		if code != http.StatusConflict || !strings.Contains(out["error"], "last") {
			t.Fatalf("%s of the last member: got %d %v, want 409", op, code, out)
		}
	}
}

func TestPartitionsWithoutMajority(t *testing.T) {
	r, err := ring.New(ring.Config{Partitions: 16, ReplicationFactor: 3})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"a", "b", "c", "d", "e"} {
		if r, err = r.Join(ring.Member{ID: id}); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name string
		dead []string
	}{
		{"all alive", nil},
		{"one dead", []string{"a"}},
		{"two dead", []string{"a", "b"}},
		{"three dead", []string{"a", "c", "e"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			alive := func(id string) bool { return !slices.Contains(tc.dead, id) }
			got := partitionsWithoutMajority(r, alive)
			// Oracle: with three replicas, a partition lacks a majority
			// exactly when two or more of them are dead.
			var want []uint32
			for p := range uint32(16) {
				dead := 0
				for _, id := range r.Replicas(p) {
					if slices.Contains(tc.dead, id) {
						dead++
					}
				}
				if dead >= 2 {
					want = append(want, p)
				}
			}
			if !slices.Equal(got, want) {
				t.Fatalf("got %v, want %v", got, want)
			}
		})
	}
	empty, err := ring.New(ring.Config{Partitions: 4, ReplicationFactor: 3})
	if err != nil {
		t.Fatal(err)
	}
	if got := partitionsWithoutMajority(empty, func(string) bool { return true }); len(got) != 4 {
		t.Fatalf("empty ring: got %v, want every partition", got)
	}
}
