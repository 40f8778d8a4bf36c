package testcluster

import (
	"context"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"
)

// RedisCLIScript is issue 19's redis-cli session: the commands a user
// would type, one a line, on redis-cli's standard input. It expects a
// key space without cli:* keys.
const RedisCLIScript = `SET cli:user:1 alice
GET cli:user:1
TTL cli:user:1
SET cli:session abc EX 100
TTL cli:session
TTL cli:none
GET cli:none
MSET cli:user:2 bob cli:user:3 carol
MGET cli:user:1 cli:none cli:user:3
SCAN 0 MATCH cli:user:* COUNT 100
SCAN 0 MATCH cli:nobody:* COUNT 100
DEL cli:user:1 cli:user:2 cli:none
GET cli:user:1
EXISTS cli:user:1 cli:user:3
SCAN 0 MATCH cli:user:* COUNT 100
INCR cli:hits
INCRBY cli:hits 41
INCR cli:user:3
SET cli:session x NX
SET cli:session 1 EX 0
PING
FOO bar
`

// RedisCLIWant is what redis-cli 7 (--no-raw) prints for RedisCLIScript
// against Redis 7, byte for byte (taken from a run against
// redis-server 7.0.15), with one liberty: Redis lists the first SCAN's
// three keys in the order of its hash table, which its per-process hash
// seed shuffles, and ringkv lists them in key order, one of the orders
// Redis may print.
const RedisCLIWant = `OK
"alice"
(integer) -1
OK
(integer) 100
(integer) -2
(nil)
OK
1) "alice"
2) (nil)
3) "carol"
1) "0"
2) 1) "cli:user:1"
   2) "cli:user:2"
   3) "cli:user:3"
1) "0"
2) (empty array)
(integer) 2
(nil)
(integer) 1
1) "0"
2) 1) "cli:user:3"
(integer) 1
(integer) 42
(error) ERR value is not an integer or out of range
(nil)
(error) ERR invalid expire time in 'set' command
PONG
(error) ERR unknown command 'FOO', with args beginning with: 'bar' 
`

// RedisCLIBinary returns the path of redis-cli (Debian's redis-tools).
// Without it on PATH it skips t, or fails it when
// RINGKV_REDIS_CLI_REQUIRED=1 (CI: .ci/run installs redis-tools).
func RedisCLIBinary(t testing.TB) string {
	t.Helper()
	bin, err := exec.LookPath("redis-cli")
	if err != nil {
		if os.Getenv("RINGKV_REDIS_CLI_REQUIRED") == "1" {
			t.Fatal("redis-cli not found (CI installs redis-tools in .ci/run)")
		}
		t.Skip("redis-cli not found: install redis-tools (Debian) to run this test")
	}
	return bin
}

// redisCLITiming matches the line redis-cli prints after a reply that
// took half a second or more ("(0.64s)"): a note on latency, not part of
// the reply.
var redisCLITiming = regexp.MustCompile(`(?m)^\(\d+\.\d\ds\)\n`)

// RedisCLI runs redis-cli --no-raw with RedisCLIScript against the Redis
// protocol address addr ("host:port") and fails t unless it prints
// RedisCLIWant, once the lines redis-cli adds after a slow reply are
// taken out (they are logged); redis-cli is given 30 seconds. Without
// redis-cli it skips or fails t as RedisCLIBinary does.
func RedisCLI(ctx context.Context, t testing.TB, addr string) {
	t.Helper()
	bin := RedisCLIBinary(t)
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("redis-cli: address %q: %v", addr, err)
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(cctx, bin, "-h", host, "-p", port, "--no-raw")
	cmd.Stdin = strings.NewReader(RedisCLIScript)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("redis-cli: %v\n%s", err, out)
	}
	if slow := redisCLITiming.FindAll(out, -1); len(slow) > 0 {
		t.Logf("redis-cli timed %d slow replies: %q", len(slow), slow)
	}
	if got := redisCLITiming.ReplaceAll(out, nil); string(got) != RedisCLIWant {
		t.Fatalf("redis-cli printed:\n%s\nwant:\n%s", out, RedisCLIWant)
	}
}
