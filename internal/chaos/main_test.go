package chaos

import (
	"os"
	"testing"

	"github.com/ringkv/ringkv/internal/testcluster"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testcluster.Cleanup()
	testcluster.CleanupNoRace()
	os.Exit(code)
}
