package main

import (
	"fmt"
	"io"
	"runtime/debug"
	"strconv"
	"strings"

	"github.com/ringkv/ringkv/node"
	"github.com/ringkv/ringkv/ring/gossip"
)

// version is the release, set at build time with
// -ldflags "-X main.version=v1.2.3"; "dev" otherwise.
var version = "dev"

// versionCommand prints the binary's version, the wire protocol versions
// it speaks and the data directory formats it reads and writes
// (docs/OPERATIONS.md, "Upgrades").
func versionCommand(args []string, stdout io.Writer) error {
	if len(args) > 0 {
		return fmt.Errorf("%w: version takes no arguments, got %q", errUsage, args)
	}
	build := ""
	if bi, ok := debug.ReadBuildInfo(); ok {
		var rev, dirty string
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				if s.Value == "true" {
					dirty = "+dirty"
				}
			}
		}
		if len(rev) > 12 {
			rev = rev[:12]
		}
		if rev != "" {
			build = " commit " + rev + dirty + ","
		}
		build += " " + bi.GoVersion
	}
	w := gossip.CurrentWire()
	reads := make([]string, 0, len(node.DiskFormatsRead()))
	for _, v := range node.DiskFormatsRead() {
		reads = append(reads, strconv.Itoa(v))
	}
	fmt.Fprintf(stdout, "ringkv %s (%s)\n", version, strings.TrimSpace(build))
	fmt.Fprintf(stdout, "wire protocol: %s (a peer must speak one of these versions)\n", w)
	fmt.Fprintf(stdout, "data format: writes %d, reads %s\n", node.DiskFormat, strings.Join(reads, ", "))
	return nil
}
