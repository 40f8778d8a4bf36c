package coordinator

import (
	"context"
	"errors"
	"testing"
	"time"

	"storj.io/drpc/drpcerr"

	"github.com/ringkv/ringkv/auth"
	"github.com/ringkv/ringkv/proto/kvpb"
	"github.com/ringkv/ringkv/replica"
)

func newBackupServer(t *testing.T, c *Coordinator, mutate func(*BackupConfig)) *BackupServer {
	t.Helper()
	cfg := DefaultBackupConfig()
	if mutate != nil {
		mutate(&cfg)
	}
	s, err := NewBackupServer(c, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func wantCode(t *testing.T, err error, want kvpb.ErrorCode) {
	t.Helper()
	if got := kvpb.ErrorCode(drpcerr.Code(err)); err == nil || got != want { //nolint:gosec // small codes
		t.Fatalf("got %v (code %v), want code %v", err, got, want)
	}
}

func scanAll(t *testing.T, s *BackupServer, req *kvpb.BackupScanRequest) map[string]*kvpb.Record {
	t.Helper()
	out := map[string]*kvpb.Record{}
	for pages := 0; ; pages++ {
		resp, err := s.Scan(t.Context(), req)
		if err != nil {
			t.Fatal(err)
		}
		for _, kr := range resp.GetRecords() {
			out[string(kr.GetKey())] = kr.GetRecord()
		}
		if len(resp.GetNext()) == 0 {
			return out
		}
		if pages > 1000 {
			t.Fatal("scan never ends")
		}
		req.Start = resp.GetNext()
	}
}

// TestBackupSessionScan: a session reads the records as they were when it
// began, in pages, filtered by timestamp or by commit version, without
// reserved keys; End releases it and later calls are refused.
func TestBackupSessionScan(t *testing.T) {
	tc := newTestCluster(t, nil)
	c := tc.coords["n1"]
	store := tc.stores["n1"]
	merge := func(key string, ts replica.Timestamp, value string) {
		t.Helper()
		if err := store.Merge(t.Context(), []replica.Entry{{Partition: 7, Key: []byte(key), Record: replica.Record{Timestamp: ts, NodeID: "n1", Value: []byte(value)}}}); err != nil {
			t.Fatal(err)
		}
	}
	for i, k := range []string{"a", "b", "c", "d", "e"} {
		merge(k, replica.Timestamp(10+i), "old-"+k)
	}
	merge("\x00ring", 12, "reserved")
	s := newBackupServer(t, c, nil)
	begin, err := s.Begin(t.Context(), &kvpb.BackupBeginRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if begin.GetHlc() == 0 || begin.GetNodeId() != "n1" || begin.GetSnapshotVersion() == 0 {
		t.Fatalf("begin: %+v", begin)
	}
	merge("a", 100, "new-a")
	merge("f", 101, "new-f")

	got := scanAll(t, s, &kvpb.BackupScanRequest{SessionId: begin.GetSessionId(), Partition: 7, Limit: 2})
	if len(got) != 5 || string(got["a"].GetValue()) != "old-a" {
		t.Fatalf("pinned scan: got %v, want a..e with a=old-a", got)
	}
	got = scanAll(t, s, &kvpb.BackupScanRequest{SessionId: begin.GetSessionId(), Partition: 7, Since: 11, Until: 13})
	if len(got) != 2 || got["c"] == nil || got["d"] == nil {
		t.Fatalf("since 11 until 13: got %v, want c and d", got)
	}

	// A second session after the writes: by version, only what was
	// committed after the first one's snapshot.
	later, err := s.Begin(t.Context(), &kvpb.BackupBeginRequest{LeaseMillis: 5000})
	if err != nil {
		t.Fatal(err)
	}
	got = scanAll(t, s, &kvpb.BackupScanRequest{SessionId: later.GetSessionId(), Partition: 7, Since: 1 << 60, AfterVersion: begin.GetSnapshotVersion()})
	if len(got) != 2 || string(got["a"].GetValue()) != "new-a" || got["f"] == nil {
		t.Fatalf("after version: got %v, want a=new-a and f", got)
	}
	if s.Sessions() != 2 {
		t.Fatalf("sessions: got %d, want 2", s.Sessions())
	}
	for _, id := range []string{begin.GetSessionId(), later.GetSessionId()} {
		if _, err := s.Renew(t.Context(), &kvpb.BackupRenewRequest{SessionId: id}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.End(t.Context(), &kvpb.BackupEndRequest{SessionId: id}); err != nil {
			t.Fatal(err)
		}
	}
	if n := store.OpenSnapshots(); n != 0 || s.Sessions() != 0 {
		t.Fatalf("after End: %d snapshots, %d sessions open", n, s.Sessions())
	}
	_, err = s.Scan(t.Context(), &kvpb.BackupScanRequest{SessionId: begin.GetSessionId(), Partition: 7})
	wantCode(t, err, kvpb.ErrorCode_ERROR_CODE_INVALID_ARGUMENT)
	_, err = s.Renew(t.Context(), &kvpb.BackupRenewRequest{SessionId: "nope"})
	wantCode(t, err, kvpb.ErrorCode_ERROR_CODE_INVALID_ARGUMENT)
	if _, err := s.End(t.Context(), &kvpb.BackupEndRequest{SessionId: "nope"}); err != nil {
		t.Fatalf("ending an unknown session: got %v, want nil", err)
	}
}

// TestBackupSessionLimits: a session whose lease runs out is released;
// Begin beyond MaxSessions is refused; after Close, Begin is refused and
// the sessions are released.
func TestBackupSessionLimits(t *testing.T) {
	tc := newTestCluster(t, nil)
	s := newBackupServer(t, tc.coords["n1"], func(c *BackupConfig) { c.MaxSessions = 2; c.DefaultLease = 50 * time.Millisecond })
	if _, err := s.Begin(t.Context(), &kvpb.BackupBeginRequest{}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for s.Sessions() != 0 || tc.stores["n1"].OpenSnapshots() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the session outlived its lease")
		}
		<-tick.C
	}
	for range 2 {
		if _, err := s.Begin(t.Context(), &kvpb.BackupBeginRequest{LeaseMillis: 60000}); err != nil {
			t.Fatal(err)
		}
	}
	_, err := s.Begin(t.Context(), &kvpb.BackupBeginRequest{})
	wantCode(t, err, kvpb.ErrorCode_ERROR_CODE_UNAVAILABLE_NOT_APPLIED)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if n := tc.stores["n1"].OpenSnapshots(); n != 0 {
		t.Fatalf("after Close: %d snapshots open", n)
	}
	_, err = s.Begin(t.Context(), &kvpb.BackupBeginRequest{})
	wantCode(t, err, kvpb.ErrorCode_ERROR_CODE_CLOSED)
}

func TestBackupConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  BackupConfig
		ok   bool
	}{
		{"zero", BackupConfig{}, true},
		{"defaults", DefaultBackupConfig(), true},
		{"negative", BackupConfig{MaxSessions: -1}, false},
		{"lease above max", BackupConfig{DefaultLease: time.Hour, MaxLease: time.Minute}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.cfg.Validate(); (err == nil) != tc.ok {
				t.Fatalf("got %v, want ok=%v", err, tc.ok)
			}
		})
	}
}

type denyAll struct{}

func (denyAll) Authorize(context.Context, auth.Action) error {
	return &auth.PermissionError{User: "bob", Need: auth.Permission{Access: auth.Admin}}
}

// TestBackupNeedsAdmin: every call of the service is authorized as admin.
func TestBackupNeedsAdmin(t *testing.T) {
	tc := newTestCluster(t, nil)
	c := tc.coords["n1"]
	c.deps.Auth = denyAll{}
	s := newBackupServer(t, c, nil)
	ctx := t.Context()
	_, err := s.Begin(ctx, &kvpb.BackupBeginRequest{})
	wantCode(t, err, kvpb.ErrorCode_ERROR_CODE_PERMISSION_DENIED)
	_, err = s.Scan(ctx, &kvpb.BackupScanRequest{})
	wantCode(t, err, kvpb.ErrorCode_ERROR_CODE_PERMISSION_DENIED)
	_, err = s.Renew(ctx, &kvpb.BackupRenewRequest{})
	wantCode(t, err, kvpb.ErrorCode_ERROR_CODE_PERMISSION_DENIED)
	_, err = s.End(ctx, &kvpb.BackupEndRequest{})
	wantCode(t, err, kvpb.ErrorCode_ERROR_CODE_PERMISSION_DENIED)
	_, err = s.Restore(ctx, &kvpb.RestoreRequest{})
	wantCode(t, err, kvpb.ErrorCode_ERROR_CODE_PERMISSION_DENIED)
}

// TestRestorePlacesAndMerges: Restore puts each record, with its own
// timestamp, on every replica the ring places it on; an older record
// loses to a newer one held; a quorum is enough and less is unavailable;
// bad records are refused before anything is merged.
func TestRestorePlacesAndMerges(t *testing.T) {
	tc := newTestCluster(t, nil)
	c := tc.coords["n1"]
	s := newBackupServer(t, c, nil)
	ctx := t.Context()
	rec := func(key string, ts uint64, value string) *kvpb.KeyedRecord {
		return &kvpb.KeyedRecord{Partition: 999, Key: []byte(key), Record: &kvpb.Record{Timestamp: ts, NodeId: "old", Value: []byte(value)}}
	}
	if err := c.Set(ctx, []byte("live"), []byte("newer"), Quorum); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Restore(ctx, &kvpb.RestoreRequest{Records: []*kvpb.KeyedRecord{rec("x", 50, "restored"), rec("live", 60, "older")}}); err != nil {
		t.Fatal(err)
	}
	r := tc.ring.Ring()
	for _, id := range tc.ids {
		got, err := tc.stores[id].Get(r.PartitionOf([]byte("x")), []byte("x"))
		if err != nil || string(got.Value) != "restored" || got.Timestamp != 50 || got.NodeID != "old" {
			t.Fatalf("%s holds %+v, %v; want the restored record as it was", id, got, err)
		}
	}
	if v, _, err := c.Get(ctx, []byte("live"), All); err != nil || string(v) != "newer" {
		t.Fatalf("live key: got %q, %v; want the newer write kept", v, err)
	}
	if next := c.deps.Clock.Now(); next <= 60 {
		t.Fatalf("clock after restore: %d, want above the restored timestamps", next)
	}

	c.StartDrain()
	_, err := s.Restore(ctx, &kvpb.RestoreRequest{Records: []*kvpb.KeyedRecord{rec("y", 70, "q")}})
	wantCode(t, err, kvpb.ErrorCode_ERROR_CODE_CLOSED)
	c.Undrain()

	tc.trans.setDown("n2", true)
	if _, err := s.Restore(ctx, &kvpb.RestoreRequest{Records: []*kvpb.KeyedRecord{rec("y", 70, "q")}}); err != nil {
		t.Fatalf("restore with one replica down: %v", err)
	}
	tc.trans.setDown("n3", true)
	_, err = s.Restore(ctx, &kvpb.RestoreRequest{Records: []*kvpb.KeyedRecord{rec("z", 70, "q")}})
	wantCode(t, err, kvpb.ErrorCode_ERROR_CODE_UNAVAILABLE)
	tc.trans.setDown("n2", false)
	tc.trans.setDown("n3", false)

	for name, bad := range map[string]*kvpb.KeyedRecord{
		"reserved":  rec("\x00ring", 1, "v"),
		"empty key": rec("", 1, "v"),
		"no record": {Key: []byte("k")},
		"future":    rec("k", uint64(replica.MakeTimestamp(time.Now().Add(time.Hour), 0)), "v"),
	} {
		_, err := s.Restore(ctx, &kvpb.RestoreRequest{Records: []*kvpb.KeyedRecord{rec("ok", 5, "v"), bad}})
		wantCode(t, err, kvpb.ErrorCode_ERROR_CODE_INVALID_ARGUMENT)
		if _, gerr := tc.stores["n1"].Get(r.PartitionOf([]byte("ok")), []byte("ok")); !errors.Is(gerr, replica.ErrNotFound) {
			t.Fatalf("%s: the good record of a refused call was merged", name)
		}
	}
}
