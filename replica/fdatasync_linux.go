package replica

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// fdatasync flushes f's data (and the metadata needed to read it back) to
// disk: Badger's files are preallocated, so this skips only timestamps.
func fdatasync(f *os.File) error {
	for {
		err := syscall.Fdatasync(int(f.Fd()))
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("fdatasync: %w", err)
		}
		return nil
	}
}
