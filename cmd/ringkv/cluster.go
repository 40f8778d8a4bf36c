package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ringkv/ringkv/node"
)

// clusterCommand runs `ringkv cluster status|leave|remove|admit|drain|undrain
// [ID]` and `ringkv cluster repair [--partition P]` against a node's
// /api/cluster endpoints.
func clusterCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("cluster", flag.ContinueOnError)
	fs.SetOutput(stderr)
	httpAddr := addHTTPAddrFlag(fs)
	timeout := fs.Duration("timeout", 15*time.Second, "request timeout (repair: per node, at least 10m)")
	partition := fs.Int("partition", -1, "repair: only this partition (default: every partition)")
	sec := addSecureFlags(fs)
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		return fmt.Errorf("%w: cluster needs a subcommand: status, leave, remove, admit, repair, drain, undrain or split", errUsage)
	}
	addr, err := httpAddr.value(fs, stderr)
	if err != nil {
		return err
	}
	api, err := sec.newHTTPAPI()
	if err != nil {
		return err
	}
	if pos[0] == "repair" {
		if len(pos) != 1 {
			return fmt.Errorf("%w: cluster repair takes no arguments, got %q", errUsage, pos[1:])
		}
		return clusterRepair(ctx, api, addr, *partition, max(*timeout, 10*time.Minute), stdout)
	}
	if sub := pos[0]; sub == "drain" || sub == "undrain" {
		if len(pos) != 2 {
			return fmt.Errorf("%w: cluster %s takes one member id", errUsage, sub)
		}
		// A drain waits for the node: give it the whole timeout and
		// the request a little more.
		return clusterDrain(ctx, api, addr, sub, pos[1], *timeout, stdout)
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	switch sub := pos[0]; sub {
	case "status":
		if len(pos) != 1 {
			return fmt.Errorf("%w: cluster status takes no arguments, got %q", errUsage, pos[1:])
		}
		return clusterStatus(ctx, api, addr, stdout)
	case "split":
		if len(pos) != 1 {
			return fmt.Errorf("%w: cluster split takes no arguments, got %q", errUsage, pos[1:])
		}
		return clusterSplit(ctx, api, addr, stdout)
	case "leave", "remove", "admit":
		if len(pos) != 2 {
			return fmt.Errorf("%w: cluster %s takes one member id", errUsage, sub)
		}
		var out node.ChangeAnswer
		u := api.url(addr, "/api/cluster/"+sub+"?"+url.Values{"id": {pos[1]}}.Encode())
		if err := api.callJSON(ctx, http.MethodPost, u, nil, &out); err != nil {
			return fmt.Errorf("cluster %s %s: %w", sub, pos[1], err)
		}
		if out.Noop {
			fmt.Fprintf(stdout, "OK: %s %s changed nothing: %s\n", sub, pos[1], out.Detail)
			return nil
		}
		fmt.Fprintf(stdout, "OK: %s %s, ring version %d\n", sub, pos[1], out.RingVersion)
		return nil
	default:
		return fmt.Errorf("%w: unknown cluster subcommand %q", errUsage, sub)
	}
}

// clusterStatus prints the members as the node at addr sees them and how
// many partitions have converged: their group's leader reports voters
// equal to the preference list. Leaders are found by asking every alive
// member that advertises an HTTP address; a partition whose leader did not
// answer, or answered with another ring version, counts as not converged.
func clusterStatus(ctx context.Context, api *httpAPI, addr string, stdout io.Writer) error {
	var st node.ClusterStatus
	if err := api.callJSON(ctx, http.MethodGet, api.url(addr, "/api/cluster/status"), nil, &st); err != nil {
		return fmt.Errorf("cluster status: %w", err)
	}
	views := map[string]node.ClusterStatus{st.NodeID: st}
	var unreachable []string
	for _, m := range st.Members {
		if _, ok := views[m.ID]; ok || m.Liveness != "alive" || m.HTTPAddr == "" {
			continue
		}
		var v node.ClusterStatus
		if err := api.callJSON(ctx, http.MethodGet, api.url(m.HTTPAddr, "/api/cluster/status"), nil, &v); err != nil {
			unreachable = append(unreachable, m.ID)
			continue
		}
		views[m.ID] = v
	}
	replicas := map[string]int{}
	for _, p := range st.Partitions {
		for _, id := range p.Preference {
			replicas[id]++
		}
	}
	leads := map[string]int{}
	converged := 0
	for p := range st.Partitions {
		for id, v := range views {
			if p >= len(v.Partitions) || v.Partitions[p].Leader != id || !v.Partitions[p].Hosted {
				continue
			}
			leads[id]++
			if v.RingVersion == st.RingVersion && v.Partitions[p].Converged {
				converged++
			}
			break
		}
	}
	fmt.Fprintf(stdout, "ring version %d, %d partitions, replication factor %d (as seen by %s)\n\n",
		st.RingVersion, st.PartitionCount, st.ReplicationFactor, st.NodeID)
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTATUS\tLIVENESS\tRING\tZONE\tHTTP\tRPC\tREPLICAS\tLEADS")
	behind := 0
	for _, m := range st.Members {
		// The version the member reported itself, else the one it
		// advertises by gossip.
		rv := m.RingVersion
		if v, ok := views[m.ID]; ok {
			rv = v.RingVersion
		}
		ring := "-"
		if rv != 0 {
			ring = fmt.Sprint(rv)
		}
		if m.Status != "removed" && rv != st.RingVersion {
			behind++
		}
		status := m.Status
		if m.Draining {
			status += ",draining"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\n", m.ID, status, m.Liveness, ring,
			orDash(m.Zone), orDash(m.HTTPAddr), orDash(m.RPCAddr), replicas[m.ID], leads[m.ID])
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("cluster status: %w", err)
	}
	if len(unreachable) > 0 {
		fmt.Fprintf(stdout, "\nno status from: %s\n", strings.Join(unreachable, ", "))
	}
	if behind > 0 {
		fmt.Fprintf(stdout, "\n%d members do not hold ring version %d yet\n", behind, st.RingVersion)
	}
	fmt.Fprintf(stdout, "\npartitions converged: %d/%d\n", converged, len(st.Partitions))
	return nil
}

// clusterDrain sends drain or undrain to the member id, whose HTTP address
// it learns from the node at addr, and prints the member's DrainReport.
// The drain itself may take up to timeout.
func clusterDrain(ctx context.Context, api *httpAPI, addr, sub, id string, timeout time.Duration, stdout io.Writer) error {
	sctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	var st node.ClusterStatus
	err := api.callJSON(sctx, http.MethodGet, api.url(addr, "/api/cluster/status"), nil, &st)
	cancel()
	if err != nil {
		return fmt.Errorf("cluster %s %s: %w", sub, id, err)
	}
	target := ""
	for _, m := range st.Members {
		if m.ID == id {
			target = m.HTTPAddr
			if m.Liveness != "alive" {
				return fmt.Errorf("cluster %s %s: the member is %s", sub, id, m.Liveness)
			}
		}
	}
	if target == "" {
		return fmt.Errorf("cluster %s %s: %s knows no member %q with an HTTP address", sub, id, st.NodeID, id)
	}
	q := url.Values{"id": {id}}
	if sub == "drain" {
		q.Set("timeout", timeout.String())
	}
	rctx, cancel := context.WithTimeout(ctx, timeout+15*time.Second)
	defer cancel()
	var rep node.DrainReport
	if err := api.callJSON(rctx, http.MethodPost, api.url(target, "/api/cluster/"+sub+"?"+q.Encode()), nil, &rep); err != nil {
		return fmt.Errorf("cluster %s %s: %w", sub, id, err)
	}
	if sub == "undrain" {
		fmt.Fprintf(stdout, "OK: %s takes client requests again\n", id)
		return nil
	}
	lead := "leads no group"
	if len(rep.Leading) > 0 {
		lead = fmt.Sprintf("still leads %d groups that no other live voter could take", len(rep.Leading))
	}
	fmt.Fprintf(stdout, "OK: %s drained in %s: %s, no client request in flight; it stays out of service until 'ringkv cluster undrain %s' or a restart\n", id, rep.Took, lead, id)
	return nil
}

// clusterRepair asks every alive member, one after the other, to exchange
// its partitions (or only partition, when >= 0) with every other live
// replica now, and prints what each did.
func clusterRepair(ctx context.Context, api *httpAPI, addr string, partition int, timeout time.Duration, stdout io.Writer) error {
	sctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	var st node.ClusterStatus
	err := api.callJSON(sctx, http.MethodGet, api.url(addr, "/api/cluster/status"), nil, &st)
	cancel()
	if err != nil {
		return fmt.Errorf("cluster repair: %w", err)
	}
	q := ""
	if partition >= 0 {
		q = "?" + url.Values{"partition": {fmt.Sprint(partition)}}.Encode()
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE	PARTITIONS	EXCHANGES	BUCKETS DIFFERING	PULLED	PUSHED	FAILED")
	var failed []string
	for _, m := range st.Members {
		if m.Liveness != "alive" || m.HTTPAddr == "" || m.Status != "joined" {
			continue
		}
		rctx, cancel := context.WithTimeout(ctx, timeout)
		var res node.RepairResult
		err := api.callJSON(rctx, http.MethodPost, api.url(m.HTTPAddr, "/api/cluster/repair"+q), nil, &res)
		cancel()
		if err != nil {
			failed = append(failed, fmt.Sprintf("%s: %v", m.ID, err))
			continue
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\n", m.ID, res.Partitions, res.Exchanges, res.Differing, res.Pulled, res.Pushed, len(res.Failed))
		for _, f := range res.Failed {
			failed = append(failed, m.ID+": "+f)
		}
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("cluster repair: %w", err)
	}
	if len(failed) > 0 {
		fmt.Fprintf(stdout, "\nfailed:\n  %s\n", strings.Join(failed, "\n  "))
		return fmt.Errorf("cluster repair: %d exchanges or nodes failed", len(failed))
	}
	return nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// clusterSplit doubles the ring's partitions: it reads P from the node at
// addr and asks it to split to 2P (POST /api/cluster/split), then says
// what happened. The groups split by themselves afterwards; `cluster
// status` shows them converge.
func clusterSplit(ctx context.Context, api *httpAPI, addr string, stdout io.Writer) error {
	var st node.ClusterStatus
	if err := api.callJSON(ctx, http.MethodGet, api.url(addr, "/api/cluster/status"), nil, &st); err != nil {
		return fmt.Errorf("cluster split: %w", err)
	}
	to := 2 * st.PartitionCount
	var out node.ChangeAnswer
	u := api.url(addr, "/api/cluster/split?"+url.Values{"partitions": {strconv.Itoa(to)}}.Encode())
	if err := api.callJSON(ctx, http.MethodPost, u, nil, &out); err != nil {
		return fmt.Errorf("cluster split to %d partitions: %w", to, err)
	}
	if out.Noop {
		fmt.Fprintf(stdout, "OK: split changed nothing: %s\n", out.Detail)
		return nil
	}
	fmt.Fprintf(stdout, "OK: split from %d to %d partitions, ring version %d; every group splits in its own log now (watch `ringkv cluster status`)\n", st.PartitionCount, out.Partitions, out.RingVersion)
	return nil
}
