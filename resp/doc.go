// Package resp serves ringkv over the Redis protocol (RESP2, and RESP3
// after HELLO 3), so that redis-cli, redis-benchmark and Redis client
// libraries work against a node unmodified. It is built on
// github.com/tidwall/redcon, which parses requests and buffers replies;
// this package maps each command onto the node's coordinator (Store).
//
// Every command a connection sends is answered in order, pipelined or
// not. Each connection has a consistency level (RINGKV.CONSISTENCY,
// default quorum) used by plain reads and writes; commands that read,
// modify and write (SET NX/XX/GET, SETNX, GETSET, GETDEL, INCR*, DECR*,
// APPEND) run at linearizable through compare-and-set loops whatever the
// connection's level. MSETNX is one transaction (atomic). MGET and MSET
// go through the Store's MultiStore when it has one (the node's does): at
// linearizable one snapshot and one transaction; at the other levels
// MGET reads key by key and MSET writes logged batches of at most 128
// keys (docs/ARCHITECTURE.md, "Transactions"). See the README's "Redis protocol"
// section for the command list and what differs from Redis.
//
// Goroutines:
//   - one accept loop per Serve call (redcon's), ending when the
//     listener is closed (Close);
//   - one per connection (redcon's), reading a batch of commands,
//     running them and flushing the replies, ending when the client
//     disconnects, sends garbage or QUIT, or the server is closed;
//   - MGET and MSET without a MultiStore, DEL, UNLINK and EXISTS run their
//     keys concurrently, in goroutines that end before the command
//     answers.
package resp
