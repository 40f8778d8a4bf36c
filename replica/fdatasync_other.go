//go:build !linux

package replica

import (
	"fmt"
	"os"
)

// fdatasync is fsync where the platform has no fdatasync.
func fdatasync(f *os.File) error {
	if err := f.Sync(); err != nil {
		return fmt.Errorf("fsync: %w", err)
	}
	return nil
}
