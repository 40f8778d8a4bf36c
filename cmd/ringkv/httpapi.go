package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/ringkv/ringkv/internal/pki"
)

// secureFlags are the flags that say how to reach a secure cluster.
type secureFlags struct {
	certsDir, user, passwordFile *string
}

// addSecureFlags registers --certs-dir, --user and --password-file on fs.
func addSecureFlags(fs *flag.FlagSet) secureFlags {
	return secureFlags{
		certsDir:     fs.String("certs-dir", envDefault("RINGKV_CERTS_DIR", ""), "a secure cluster: ca.crt (and client.USER.crt) in this directory (env RINGKV_CERTS_DIR)"),
		user:         fs.String("user", envDefault("RINGKV_USER", ""), "the user to act as: its client certificate, or its password with --password-file (env RINGKV_USER)"),
		passwordFile: fs.String("password-file", envDefault("RINGKV_PASSWORD_FILE", ""), "file whose first line is the user's password (env RINGKV_PASSWORD_FILE)"),
	}
}

// defaultHTTPAddr is the node the HTTP commands call by default.
const defaultHTTPAddr = "127.0.0.1:8081"

// httpAddrFlag is the node address of the commands that talk HTTP
// (cluster, auth, user, role): --http-addr, env RINGKV_HTTP_ADDR. --addr
// and RINGKV_ADDR are the drpc address of the data commands; --addr is
// still taken here for the scripts written before --http-addr, with a
// warning, and RINGKV_ADDR is not read.
type httpAddrFlag struct {
	addr, legacy *string
}

// addHTTPAddrFlag registers --http-addr and the deprecated --addr on fs.
func addHTTPAddrFlag(fs *flag.FlagSet) httpAddrFlag {
	return httpAddrFlag{
		addr:   fs.String("http-addr", envDefault("RINGKV_HTTP_ADDR", defaultHTTPAddr), "HTTP address of any node (env RINGKV_HTTP_ADDR)"),
		legacy: fs.String("addr", "", "deprecated here, use --http-addr (--addr is the drpc address of get/set/del/list/cas)"),
	}
}

// value returns the address to call, once fs is parsed: --http-addr, or
// the deprecated --addr, which prints a warning to stderr. Both is a
// usage error.
func (f httpAddrFlag) value(fs *flag.FlagSet, stderr io.Writer) (string, error) {
	set := map[string]bool{}
	fs.Visit(func(fl *flag.Flag) { set[fl.Name] = true })
	if !set["addr"] {
		return *f.addr, nil
	}
	if set["http-addr"] {
		return "", fmt.Errorf("%w: give a node's HTTP address once, as --http-addr (--addr is the drpc address of get/set/del/list/cas)", errUsage)
	}
	fmt.Fprintf(stderr, "ringkv: warning: %s takes a node's HTTP address as --http-addr (env RINGKV_HTTP_ADDR); --addr is the drpc address of get/set/del/list/cas and will be refused here\n", fs.Name())
	return *f.legacy, nil
}

// readPasswordFile returns the first line of path.
func readPasswordFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("%w: password file: %w", errUsage, err)
	}
	defer func() { _ = f.Close() }() // read only
	sc := bufio.NewScanner(f)
	if !sc.Scan() {
		return "", fmt.Errorf("%w: password file %s is empty", errUsage, path)
	}
	return strings.TrimRight(sc.Text(), "\r"), nil
}

// httpAPI calls a node's HTTP API, over TLS with credentials for a
// secure cluster.
type httpAPI struct {
	client *http.Client
	scheme string // "http" or "https"
	auth   string // the Authorization header, or ""
}

// newHTTPAPI builds the HTTP client the flags describe: plain HTTP
// without --certs-dir; HTTPS trusting certs-dir/ca.crt and presenting
// client.USER.crt (if there is one) with it; basic auth with
// --password-file.
func (f secureFlags) newHTTPAPI() (*httpAPI, error) {
	api := &httpAPI{client: &http.Client{Timeout: 10 * time.Minute}, scheme: "http"}
	if *f.certsDir == "" {
		if *f.passwordFile != "" {
			return nil, fmt.Errorf("%w: --password-file needs --certs-dir: passwords travel only over TLS", errUsage)
		}
		return api, nil
	}
	cfg, err := pki.ClientTLS(*f.certsDir, *f.user)
	if err != nil {
		return nil, fmt.Errorf("%w: --certs-dir: %w", errUsage, err)
	}
	api.client.Transport = &http.Transport{TLSClientConfig: cfg}
	api.scheme = "https"
	if *f.passwordFile != "" {
		if *f.user == "" {
			return nil, fmt.Errorf("%w: --password-file needs --user", errUsage)
		}
		pw, err := readPasswordFile(*f.passwordFile)
		if err != nil {
			return nil, err
		}
		api.auth = "Basic " + base64.StdEncoding.EncodeToString([]byte(*f.user+":"+pw))
	}
	return api, nil
}

// url returns the URL of path on the node at addr ("host:port").
func (a *httpAPI) url(addr, path string) string { return a.scheme + "://" + addr + path }

// callJSON sends a request (with body encoded as JSON, if not nil) and
// decodes a JSON answer into out (if not nil). A non-2xx answer is an
// error carrying the server's "error" message.
func (a *httpAPI) callJSON(ctx context.Context, method, u string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("encode request: %w", err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	if a.auth != "" {
		req.Header.Set("Authorization", a.auth)
	}
	resp, err := a.client.Do(req)
	if err != nil {
		return err //nolint:wrapcheck // the url.Error names method and URL
	}
	defer func() { _ = resp.Body.Close() }() // read fully below
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("read answer: %w", err)
	}
	if resp.StatusCode/100 != 2 {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(b, &e) == nil && e.Error != "" {
			return fmt.Errorf("HTTP %d: %s", resp.StatusCode, e.Error)
		}
		return fmt.Errorf("HTTP %d: %s", resp.StatusCode, strings.TrimSpace(string(b)))
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("bad answer (HTTP %d): %w", resp.StatusCode, err)
	}
	return nil
}

// parseInterleaved parses args with fs, letting flags come before, between
// or after the positional arguments, which it returns in order.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, fmt.Errorf("%w: %w", errUsage, err)
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}
