package chaos

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestRecheckSavedHistories re-checks the per-key histories a failed run
// saved (RINGKV_CHAOS_RECHECK=DIR, the run's evidence directory) with a
// longer porcupine budget (RINGKV_CHAOS_RECHECK_TIMEOUT, default 10m per
// key). A key that timed out in the run's checker is neither proven
// linearizable nor proven not; this settles it. Skipped unless asked.
func TestRecheckSavedHistories(t *testing.T) {
	dir := os.Getenv("RINGKV_CHAOS_RECHECK")
	if dir == "" {
		t.Skip("set RINGKV_CHAOS_RECHECK to a chaos evidence directory")
	}
	perKey := 10 * time.Minute
	if v := os.Getenv("RINGKV_CHAOS_RECHECK_TIMEOUT"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatal(err)
		}
		perKey = d
	}
	files, err := filepath.Glob(filepath.Join(dir, "lin_*.history.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no lin_*.history.json in %s (%v)", dir, err)
	}
	var ops []Op
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var keyOps []Op
		if err := json.Unmarshal(b, &keyOps); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		ops = append(ops, keyOps...)
	}
	res := CheckLinearizable(ops, perKey, t.TempDir())
	t.Logf("rechecked %d operations on %d keys with %v per key in %v: illegal %d, timed out %d %v",
		res.Ops, res.Keys, perKey, res.Took.Round(time.Millisecond), res.Illegal, res.TimedOut, res.BadKeys)
	if !res.Linearizable() {
		t.Fatalf("not linearizable: %d illegal, %d timed out", res.Illegal, res.TimedOut)
	}
}
