// Package proto holds the protobuf definitions of ringkv's node-to-node
// protocol (kv.proto, raft.proto, lin.proto, repair.proto), the client
// protocol (client.proto) and the backup protocol (backup.proto). The
// generated Go code lives in proto/kvpb, committed,
// so that building ringkv needs no protoc. After editing kv.proto, regenerate
// it with:
//
//	go generate ./proto/...
//
// which runs gen.sh (protoc from Debian's protobuf-compiler, plugins
// protoc-gen-go and protoc-gen-go-drpc at pinned versions).
//
// Compatibility: fields are only ever added, never renumbered or reused.
package proto

//go:generate bash gen.sh
