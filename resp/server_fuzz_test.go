package resp

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"
)

// fuzzServer is a real Server over a memStore on a loopback listener,
// shared by every input of a fuzz run.
func fuzzServer(f *testing.F) string {
	srv, err := New(DefaultConfig(), Deps{Store: newMemStore()})
	if err != nil {
		f.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(lis) }()
	f.Cleanup(func() {
		if err := srv.Close(); err != nil {
			f.Error(err)
		}
		if err := <-done; err != nil {
			f.Errorf("serve: %v", err)
		}
	})
	return lis.Addr().String()
}

// pingAfter writes pre then a PING on a new connection and reports whether
// a PONG came back within wait; a connection the server closed (QUIT, a
// protocol error) or an unfinished frame is no PONG, and the caller then
// checks a fresh connection.
func pingAfter(t *testing.T, addr string, pre []byte, wait time.Duration) (pong bool) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer func() { _ = c.Close() }()
	if err := c.SetDeadline(time.Now().Add(wait)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write(append(bytes.Clone(pre), "*1\r\n$4\r\nPING\r\n"...)); err != nil {
		return false
	}
	r := bufio.NewReader(c)
	for {
		line, err := r.ReadString('\n')
		if strings.HasPrefix(line, "+PONG") {
			return true
		}
		if err != nil {
			return false
		}
	}
}

// encodeArgs is argv as a RESP array of bulk strings.
func encodeArgs(args [][]byte) []byte {
	b := fmt.Appendf(nil, "*%d\r\n", len(args))
	for _, a := range args {
		b = fmt.Appendf(b, "$%d\r\n", len(a))
		b = append(b, a...)
		b = append(b, "\r\n"...)
	}
	return b
}

// FuzzCommands dispatches arbitrary argument vectors (NUL-separated in the
// input) through a real Server: never a panic, never a hang, and the
// server still answers PING afterwards on a fresh connection.
func FuzzCommands(f *testing.F) {
	addr := fuzzServer(f)
	for _, s := range []string{
		"SET\x00k\x00v", "SET\x00k\x00v\x00EX\x00-1", "SET\x00k\x00v\x00PX\x000", "GET\x00k", "MSET\x00a\x001\x00b",
		"SCAN\x000\x00COUNT\x00-5", "SCAN\x0099999999999999999999", "HELLO\x003\x00AUTH\x00u", "HELLO\x00x", "CONSISTENCY\x00bogus",
		"EXPIRE\x00k\x009223372036854775807", "INCRBY\x00k\x00x", "COMMAND\x00INFO", "CLIENT\x00SETNAME", "SELECT\x001", "QUIT", "",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		args := bytes.Split(in, []byte{0})
		if len(args) > 16 {
			args = args[:16]
		}
		if pingAfter(t, addr, encodeArgs(args), 5*time.Second) {
			return
		}
		if !pingAfter(t, addr, nil, 5*time.Second) {
			t.Fatalf("server stopped answering PING after %q", in)
		}
	})
}

// FuzzProtocol writes arbitrary bytes (RESP or inline, well formed or not)
// to a real Server; the server must stay up and answer PING.
func FuzzProtocol(f *testing.F) {
	addr := fuzzServer(f)
	for _, s := range []string{
		"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n", "GET k\r\n", "*1\r\n$-1\r\n", "*99999999\r\n", "$99999999999\r\n",
		"*2\r\n$3\r\nGET\r\n$5\r\nk\r\n", "*-5\r\n", "\r\n\r\n", "*1\r\n:1\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		_ = pingAfter(t, addr, in, 100*time.Millisecond) // an unfinished frame waits for more
		if !pingAfter(t, addr, nil, 5*time.Second) {
			t.Fatalf("server stopped answering PING after %q", in)
		}
	})
}
