package hosts

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// The test binary doubles as the programs run on the hosts:
// RINGKV_HOSTS_HELPER=echo ADDR serves a line echo on ADDR;
// RINGKV_HOSTS_HELPER=ask ADDR sends one line to ADDR and prints the answer.
func TestMain(m *testing.M) {
	switch os.Getenv("RINGKV_HOSTS_HELPER") {
	case "echo":
		os.Exit(echo(os.Getenv("RINGKV_HOSTS_ADDR")))
	case "ask":
		os.Exit(ask(os.Getenv("RINGKV_HOSTS_ADDR")))
	}
	os.Exit(m.Run())
}

func echo(addr string) int {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println("listening")
	for {
		c, err := l.Accept()
		if err != nil {
			return 1
		}
		go func() {
			defer c.Close() //nolint:errcheck // test helper
			line, err := bufio.NewReader(c).ReadString('\n')
			if err == nil {
				_, _ = io.WriteString(c, "echo "+line)
			}
		}()
	}
}

func ask(addr string) int {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer c.Close() //nolint:errcheck // test helper
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, "hi\n"); err != nil {
		return 1
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Print(line)
	return 0
}

// helper returns the test binary as a command on h.
func helper(t *testing.T, h *Host, mode, addr string) *exec.Cmd {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := h.Command(self, "-test.run=^$")
	cmd.Env = append(os.Environ(), "RINGKV_HOSTS_HELPER="+mode, "RINGKV_HOSTS_ADDR="+addr)
	return cmd
}

// startEcho runs the echo helper on h and waits until it listens.
func startEcho(t *testing.T, h *Host, addr string) {
	t.Helper()
	cmd := helper(t, h, "echo", addr)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = h.Thaw() // a frozen process cannot take SIGKILL's cleanup otherwise
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "listening" {
		t.Fatalf("echo helper on %s: %q, %v", h.Name, line, err)
	}
}

// roundTrip sends a line to addr from the client host and reads the echo.
func roundTrip(nt *Net, addr string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	c, err := nt.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close() //nolint:errcheck // test
	_ = c.SetDeadline(time.Now().Add(timeout))
	if _, err := io.WriteString(c, "hi\n"); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if line != "echo hi\n" {
		return fmt.Errorf("answer %q", line)
	}
	return nil
}

func TestHosts(t *testing.T) {
	nt := New(t, 2)
	h1, h2 := nt.Host("h1"), nt.Host("h2")
	if h1 == nil || h2 == nil || nt.Host("h3") != nil {
		t.Fatalf("hosts: %v", nt.Hosts)
	}
	if h1.IP == h2.IP || !strings.HasPrefix(h1.IP, "10.231.") {
		t.Fatalf("addresses %s, %s", h1.IP, h2.IP)
	}
	addr := net.JoinHostPort(h1.IP, "7000")
	startEcho(t, h1, addr)

	t.Run("client reaches a host", func(t *testing.T) {
		if err := roundTrip(nt, addr, 5*time.Second); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("host reaches host", func(t *testing.T) {
		out, err := helper(t, h2, "ask", addr).Output()
		if err != nil || string(out) != "echo hi\n" {
			t.Fatalf("h2 -> h1: %q, %v", out, err)
		}
	})
	t.Run("listener on 0.0.0.0 is the host's only", func(t *testing.T) {
		// Both hosts listen on every interface at the same port: each
		// has its own stack.
		startEcho(t, h2, "0.0.0.0:7000")
		if err := roundTrip(nt, net.JoinHostPort(h2.IP, "7000"), 5*time.Second); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("link down and up", func(t *testing.T) {
		if err := h1.LinkDown(); err != nil {
			t.Fatal(err)
		}
		err := roundTrip(nt, addr, 500*time.Millisecond)
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("with the link down: %v, want a timeout", err)
		}
		if err := h1.LinkUp(); err != nil {
			t.Fatal(err)
		}
		if err := roundTrip(nt, addr, 5*time.Second); err != nil {
			t.Fatalf("after link up: %v", err)
		}
	})
	t.Run("freeze and thaw", func(t *testing.T) {
		pids, err := h1.Pids()
		if err != nil || len(pids) != 1 {
			t.Fatalf("pids %v, %v", pids, err)
		}
		if err := h1.Freeze(); err != nil {
			t.Fatal(err)
		}
		err = roundTrip(nt, addr, 500*time.Millisecond)
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("frozen: %v, want a timeout", err)
		}
		if err := h1.Thaw(); err != nil {
			t.Fatal(err)
		}
		if err := roundTrip(nt, addr, 5*time.Second); err != nil {
			t.Fatalf("thawed: %v", err)
		}
	})
}

func TestCloseRemovesEverything(t *testing.T) {
	nt, err := create(1)
	if errors.Is(err, ErrUnsupported) {
		t.Skip(err)
	}
	if err != nil {
		if nt != nil {
			_ = nt.Close()
		}
		t.Fatal(err)
	}
	names := []string{nt.sw, nt.Hosts[0].NS, nt.client.NS}
	if err := nt.Close(); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if strings.Contains(string(out), n) {
			t.Errorf("namespace %s still there after Close", n)
		}
	}
}

func TestDiagnose(t *testing.T) {
	nt := New(t, 2)
	out := nt.Diagnose()
	for _, want := range []string{nt.sw, nt.Host("h1").NS, nt.Host("h2").NS, nt.client.NS, nt.Host("h2").IP, "br0", "vh1"} {
		if !strings.Contains(out, want) {
			t.Errorf("Diagnose lacks %q:\n%s", want, out)
		}
	}
	if nt.Host("nope") != nil {
		t.Error("Host of an unknown name is not nil")
	}
}
