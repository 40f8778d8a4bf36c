package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// clientCommand runs get, set, del and list against a node's HTTP API.
func clientCommand(ctx context.Context, cmd string, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", envDefault("RINGKV_ADDR", "127.0.0.1:8081"), "HTTP address of any node (env RINGKV_ADDR)")
	level := fs.String("consistency", "quorum", "one, quorum or all")
	limit := fs.Int("limit", 0, "list: at most this many pairs (0: server default)")
	timeout := fs.Duration("timeout", 10*time.Second, "request timeout")
	// Flags may come before or after the positional arguments.
	var pos []string
	rest := args
	for {
		if err := fs.Parse(rest); err != nil {
			return fmt.Errorf("%w: %w", errUsage, err)
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		rest = fs.Args()[1:]
	}
	want := map[string][2]int{"get": {1, 1}, "set": {2, 2}, "del": {1, 1}, "delete": {1, 1}, "list": {0, 1}}[cmd]
	if len(pos) < want[0] || len(pos) > want[1] {
		return fmt.Errorf("%w: %s takes %d..%d arguments, got %d", errUsage, cmd, want[0], want[1], len(pos))
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	q := url.Values{"consistency": {*level}}
	base := "http://" + *addr
	var (
		method = http.MethodGet
		path   string
		body   []byte
	)
	switch cmd {
	case "get":
		q.Set("key", pos[0])
		path = "/api/get"
	case "set":
		method, path = http.MethodPost, "/api/set"
		b, err := json.Marshal(map[string]string{"key": pos[0], "value": pos[1]})
		if err != nil {
			return fmt.Errorf("encode request: %w", err)
		}
		body = b
	case "del", "delete":
		method, path = http.MethodDelete, "/api/delete"
		q.Set("key", pos[0])
	case "list":
		path = "/api/list"
		if len(pos) == 1 {
			q.Set("prefix", pos[0])
		}
		if *limit > 0 {
			q.Set("limit", strconv.Itoa(*limit))
		}
	}
	req, err := http.NewRequestWithContext(ctx, method, base+path+"?"+q.Encode(), bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("%s: %w", cmd, err)
	}
	defer func() { _ = resp.Body.Close() }() // read fully below
	var out struct {
		Error   string `json:"error"`
		Value   string `json:"value"`
		Found   bool   `json:"found"`
		Success bool   `json:"success"`
		Pairs   []struct {
			Key   string `json:"key"`
			Value string `json:"value"`
		} `json:"pairs"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return fmt.Errorf("%s: bad response (HTTP %d): %w", cmd, resp.StatusCode, err)
	}
	switch {
	case out.Error != "":
		return fmt.Errorf("%s: HTTP %d: %s", cmd, resp.StatusCode, out.Error)
	case cmd == "get" && !out.Found:
		return fmt.Errorf("get %q: not found", pos[0])
	case cmd == "get":
		fmt.Fprintln(stdout, out.Value)
	case cmd == "list":
		for _, p := range out.Pairs {
			fmt.Fprintf(stdout, "%s\t%s\n", p.Key, p.Value)
		}
	default:
		fmt.Fprintln(stdout, "OK")
	}
	return nil
}
