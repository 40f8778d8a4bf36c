#!/usr/bin/env bash
# Regenerates proto/kvpb from the .proto files listed below. Needs protoc (Debian: protobuf-compiler);
# the Go plugins are installed at pinned versions into a private GOBIN.
set -euo pipefail
cd "$(dirname "$0")"
bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
GOBIN=$bin go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
GOBIN=$bin go install storj.io/drpc/cmd/protoc-gen-go-drpc@v1.0.0
# The files live under ringkv/v1/ so that the protobuf registry knows them
# as "ringkv/v1/kv.proto" etc.: a bare "kv.proto" collides with etcd's
# mvccpb in a binary that links both (the bench/etcd peer driver does).
PATH=$bin:$PATH protoc -I . \
  --go_out=kvpb --go_opt=module=github.com/ringkv/ringkv/proto/kvpb \
  --go-drpc_out=kvpb --go-drpc_opt=module=github.com/ringkv/ringkv/proto/kvpb \
  ringkv/v1/kv.proto ringkv/v1/raft.proto ringkv/v1/lin.proto ringkv/v1/client.proto ringkv/v1/repair.proto ringkv/v1/backup.proto
