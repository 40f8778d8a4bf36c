#!/usr/bin/env bash
# Regenerates proto/kvpb from the .proto files listed below. Needs protoc (Debian: protobuf-compiler);
# the Go plugins are installed at pinned versions into a private GOBIN.
set -euo pipefail
cd "$(dirname "$0")"
bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
GOBIN=$bin go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
GOBIN=$bin go install storj.io/drpc/cmd/protoc-gen-go-drpc@v1.0.0
PATH=$bin:$PATH protoc -I . \
  --go_out=kvpb --go_opt=paths=source_relative \
  --go-drpc_out=kvpb --go-drpc_opt=paths=source_relative \
  kv.proto raft.proto lin.proto client.proto repair.proto
