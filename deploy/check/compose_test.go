package check

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/ringkv/ringkv/node"
)

const composeFile = "deploy/compose.yaml"

// compose is the part of the Compose specification deploy/compose.yaml
// uses; decoding is strict, so a field outside it (or a misspelt one)
// fails the test.
type compose struct {
	Name     string                    `json:"name"`
	XNode    map[string]any            `json:"x-node"` // the nodes' common settings (a YAML anchor)
	Services map[string]composeService `json:"services"`
	Networks map[string]composeNetwork `json:"networks"`
	Volumes  map[string]*emptyVolume   `json:"volumes"`
}

// emptyVolume is a volume declared without options.
type emptyVolume struct{}

type composeService struct {
	Image           string                           `json:"image"`
	Build           *composeBuild                    `json:"build"`
	Restart         string                           `json:"restart"`
	DependsOn       map[string]composeDependency     `json:"depends_on"`
	StopGracePeriod string                           `json:"stop_grace_period"`
	Hostname        string                           `json:"hostname"`
	Entrypoint      []string                         `json:"entrypoint"`
	Command         []string                         `json:"command"`
	Environment     map[string]string                `json:"environment"`
	Ports           []string                         `json:"ports"`
	Networks        map[string]composeServiceNetwork `json:"networks"`
	Volumes         []string                         `json:"volumes"`
}

type composeBuild struct {
	Context    string `json:"context"`
	Dockerfile string `json:"dockerfile"`
}

type composeDependency struct {
	Condition string `json:"condition"`
}

type composeServiceNetwork struct {
	IPv4Address string `json:"ipv4_address"`
}

type composeNetwork struct {
	IPAM struct {
		Config []struct {
			Subnet string `json:"subnet"`
		} `json:"config"`
	} `json:"ipam"`
}

func loadCompose(t *testing.T) compose {
	t.Helper()
	var c compose
	if err := yaml.UnmarshalStrict(readRepoFile(t, composeFile), &c); err != nil {
		t.Fatalf("%s: %v", composeFile, err)
	}
	return c
}

// nodes returns the services that run a ringkv node (those with an id),
// sorted by name.
func (c compose) nodes() []string {
	var out []string
	for name, s := range c.Services {
		if s.Environment["RINGKV_ID"] != "" {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// mounts returns a service's volume mounts: target path -> volume name.
func (s composeService) mounts() map[string]string {
	out := map[string]string{}
	for _, v := range s.Volumes {
		parts := strings.Split(v, ":")
		if len(parts) >= 2 {
			out[parts[1]] = parts[0]
		}
	}
	return out
}

// mountOf returns the volume and mount path holding path.
func (s composeService) mountOf(path string) (volume, target string, ok bool) {
	for target, vol := range s.mounts() {
		if path == target || strings.HasPrefix(path, strings.TrimSuffix(target, "/")+"/") {
			return vol, target, true
		}
	}
	return "", "", false
}

// composeUnescape undoes Compose's escaping: $$ is a literal $.
func composeUnescape(s string) string { return strings.ReplaceAll(s, "$$", "$") }

// forLoop matches a one-line shell loop: for V in A B C; do BODY; done.
var forLoop = regexp.MustCompile(`for (\w+) in ([^;]+); do (.*?); done`)

// expandForLoops writes out the one-line loops of a shell script, one
// line per item, so that the files the script writes can be looked for
// by name.
func expandForLoops(script string) string {
	return forLoop.ReplaceAllStringFunc(script, func(m string) string {
		sub := forLoop.FindStringSubmatch(m)
		var lines []string
		for _, item := range strings.Fields(sub[2]) {
			lines = append(lines, strings.NewReplacer("$"+sub[1], item, "${"+sub[1]+"}", item).Replace(sub[3]))
		}
		return strings.Join(lines, "\n")
	})
}

// createNodeLine matches a `ringkv certs create-node` line of the certs
// service's script.
var createNodeLine = regexp.MustCompile(`ringkv certs create-node (.*)`)

func TestCompose(t *testing.T) {
	c := loadCompose(t)
	img := loadImageDefaults(t)
	nodes := c.nodes()
	if len(nodes) != 3 {
		t.Fatalf("%d node services %q, want 3", len(nodes), nodes)
	}
	if len(c.Networks) != 1 {
		t.Fatalf("%d networks, want 1", len(c.Networks))
	}
	var netName string
	var subnet *net.IPNet
	for name, n := range c.Networks {
		if len(n.IPAM.Config) != 1 {
			t.Fatalf("network %s: want one ipam subnet", name)
		}
		_, sn, err := net.ParseCIDR(n.IPAM.Config[0].Subnet)
		if err != nil {
			t.Fatalf("network %s: %v", name, err)
		}
		netName, subnet = name, sn
	}

	// The certificates the certs service makes: node id -> hosts (SANs)
	// and directory.
	certs, ok := c.Services["certs"]
	if !ok || len(certs.Command) != 1 {
		t.Fatal("no certs service with a one-script command")
	}
	script := expandForLoops(composeUnescape(certs.Command[0]))
	if regexp.MustCompile(`\$[A-Za-z{]`).MatchString(strings.ReplaceAll(certs.Command[0], "$$", "")) {
		t.Errorf("the certs script has a $VAR that Compose would interpolate from the host: write $$")
	}
	type nodeCert struct {
		dir   string
		hosts []string
	}
	made := map[string]nodeCert{}
	for _, m := range createNodeLine.FindAllStringSubmatch(script, -1) {
		flags, hosts := flagValues(strings.Fields(m[1]))
		made[flags["id"]] = nodeCert{flags["certs-dir"], hosts}
	}

	ports := map[string][]int{}
	var founders []string
	gossipAddrs := map[string]string{}
	for _, name := range nodes {
		gossipAddrs[c.Services[name].Environment["RINGKV_GOSSIP"]] = name
	}
	for _, name := range nodes {
		s := c.Services[name]
		env := s.Environment
		t.Run(name, func(t *testing.T) {
			ip := s.Networks[netName].IPv4Address
			if net.ParseIP(ip) == nil || !subnet.Contains(net.ParseIP(ip)) {
				t.Fatalf("ipv4_address %q is not in the network's subnet %s", ip, subnet)
			}
			if s.Image != c.Services["certs"].Image || s.DependsOn["certs"].Condition != "service_completed_successfully" {
				t.Errorf("image %s depends_on %v: want the certs service's image, after it completed", s.Image, s.DependsOn)
			}
			for _, kind := range []string{"HTTP", "RPC", "GOSSIP", "RESP"} {
				host, port := hostPort(t, "RINGKV_"+kind, env["RINGKV_"+kind])
				if host != ip {
					t.Errorf("RINGKV_%s=%s: want the container's fixed address %s (a node advertises its listen address)", kind, env["RINGKV_"+kind], ip)
				}
				ports[kind] = append(ports[kind], port)
				want := []string{fmt.Sprintf("%d:%d", port, port)}
				if kind == "GOSSIP" {
					want = append(want, fmt.Sprintf("%d:%d/udp", port, port))
				}
				for _, w := range want {
					if !slices.Contains(s.Ports, w) {
						t.Errorf("ports %q lack %s for RINGKV_%s", s.Ports, w, kind)
					}
				}
			}
			if len(s.Ports) != 5 {
				t.Errorf("ports %q: want exactly the HTTP, drpc, gossip (TCP, UDP) and RESP ports", s.Ports)
			}
			// Secure: certificates made for this node's id and address,
			// in the directory it reads, and the gossip key.
			cert, ok := made[env["RINGKV_ID"]]
			if !ok {
				t.Fatalf("the certs service makes no node certificate for %s", env["RINGKV_ID"])
			}
			if !slices.Contains(cert.hosts, ip) {
				t.Errorf("the node certificate of %s names %q, not its address %s (peers check it)", env["RINGKV_ID"], cert.hosts, ip)
			}
			if env["RINGKV_CERTS_DIR"] != cert.dir {
				t.Errorf("RINGKV_CERTS_DIR=%s, but its certificate is made in %s", env["RINGKV_CERTS_DIR"], cert.dir)
			}
			key := env["RINGKV_GOSSIP_KEY_FILE"]
			if key == "" || !strings.Contains(script, key) {
				t.Errorf("RINGKV_GOSSIP_KEY_FILE=%q is not written by the certs service", key)
			}
			for _, p := range []string{cert.dir, key} {
				vol, _, ok := s.mountOf(p)
				if _, _, certsHas := certs.mountOf(p); !ok || !certsHas || vol != certs.mounts()["/certs"] {
					t.Errorf("%s is not on the volume the certs service writes", p)
				}
			}
			for k, v := range env {
				if strings.Contains(k+v, "INSECURE") || strings.Contains(v, "--insecure") {
					t.Errorf("%s=%s: the cluster must be secure", k, v)
				}
			}
			// Data on its own volume, where the image keeps it.
			data := img.env["RINGKV_DATA"]
			if d, ok := env["RINGKV_DATA"]; ok {
				data = d
			}
			if vol, target, ok := s.mountOf(data); !ok || target != data || vol == certs.mounts()["/certs"] {
				t.Errorf("the data directory %s is not a volume of its own", data)
			}
			// Joins: other nodes' gossip addresses.
			join := env["RINGKV_JOIN"]
			if join == "" {
				founders = append(founders, name)
			}
			for _, a := range strings.Split(join, ",") {
				if other, ok := gossipAddrs[a]; a != "" && (!ok || other == name) {
					t.Errorf("RINGKV_JOIN entry %q is not another node's RINGKV_GOSSIP", a)
				}
			}
		})
	}
	if len(founders) != 1 {
		t.Errorf("nodes without RINGKV_JOIN: %q, want exactly one (the founder)", founders)
	}
	// The original spec's ports.
	for kind, want := range map[string][]int{"HTTP": {8081, 8082, 8083}, "RPC": {9001, 9002, 9003}, "GOSSIP": {7001, 7002, 7003}, "RESP": {6381, 6382, 6383}} {
		if got := ports[kind]; !slices.Equal(got, want) {
			t.Errorf("%s ports %v, want %v", kind, got, want)
		}
	}
}

// TestComposeClusterForms runs the certs service's script and the three
// node services as processes, with each container's fixed address mapped
// to a loopback address and each volume to a directory, and checks that
// the nodes form one secure cluster.
func TestComposeClusterForms(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three ringkv processes")
	}
	c := loadCompose(t)
	img := loadImageDefaults(t)
	bin := ringkvBinary(t)
	nodes := c.nodes()
	var ports []int
	for _, name := range nodes {
		for _, p := range c.Services[name].Ports {
			n, err := strconv.Atoi(strings.Split(p, ":")[0])
			if err != nil {
				t.Fatalf("service %s port %q: %v", name, p, err)
			}
			ports = append(ports, n)
		}
	}
	prefix := loopbackNet(t, ports)
	// Every fixed address is in the subnet's last octet; map a.b.c.N to
	// the loopback prefix + N.
	ipRe := regexp.MustCompile(`\b172\.28\.0\.(\d+)\b`)
	for _, n := range c.Networks {
		if n.IPAM.Config[0].Subnet != "172.28.0.0/24" {
			t.Fatalf("subnet %s: this test maps 172.28.0.0/24", n.IPAM.Config[0].Subnet)
		}
	}
	dir := t.TempDir()
	rewriteFor := func(s composeService) func(string) string {
		targets := map[string]string{}
		for target, vol := range s.mounts() {
			targets[target] = filepath.Join(dir, "volume-"+vol)
		}
		paths := pathRewriter(targets)
		return func(v string) string { return paths(ipRe.ReplaceAllString(v, prefix+"${1}")) }
	}
	for _, s := range c.Services {
		for _, vol := range s.mounts() {
			if err := os.MkdirAll(filepath.Join(dir, "volume-"+vol), 0o700); err != nil {
				t.Fatal(err)
			}
		}
	}
	containerEnv := func(s composeService) []string {
		rw := rewriteFor(s)
		vars := map[string]string{}
		for k, v := range img.env {
			vars[k] = rw(v)
		}
		for k, v := range s.Environment {
			vars[k] = rw(composeUnescape(v))
		}
		return environ(vars, filepath.Dir(bin))
	}
	argv := func(s composeService) []string {
		ep, cmd := img.entrypoint, img.cmd
		if s.Entrypoint != nil {
			ep, cmd = s.Entrypoint, nil
		}
		if s.Command != nil {
			cmd = s.Command
		}
		rw := rewriteFor(s)
		var out []string
		for _, a := range slices.Concat(ep, cmd) {
			out = append(out, rw(composeUnescape(a)))
		}
		if out[0] == "ringkv" {
			out[0] = bin
		}
		return out
	}

	certs := c.Services["certs"]
	a := argv(certs)
	run(t, containerEnv(certs), a[0], a[1:]...)
	var procs []*process
	for _, name := range nodes {
		s := c.Services[name]
		a := argv(s)
		procs = append(procs, start(t, name, containerEnv(s), a[0], a[1:]...))
	}

	caFile := filepath.Join(dir, "volume-"+certs.mounts()["/certs"], "ca", "ca.crt")
	hc := httpsClient(t, caFile)
	ctx := context.Background()
	addr := func(name string) string {
		return rewriteFor(c.Services[name])(c.Services[name].Environment["RINGKV_HTTP"])
	}
	for _, name := range nodes {
		waitFor(t, 90*time.Second, name+" /ready", func() error {
			if err := exited(procs); err != nil {
				return err
			}
			code, err := getJSON(ctx, hc, "https://"+addr(name)+"/ready", nil)
			if err == nil && code != http.StatusOK {
				err = fmt.Errorf("HTTP %d", code)
			}
			return err
		})
	}
	var st node.ClusterStatus
	if code, err := getJSON(ctx, hc, "https://"+addr(nodes[0])+"/api/cluster/status", &st); err != nil || code != http.StatusOK {
		t.Fatalf("cluster status: HTTP %d, %v", code, err)
	}
	if len(st.Members) != len(nodes) {
		t.Fatalf("cluster status lists %d members, want %d", len(st.Members), len(nodes))
	}
	for i, m := range st.Members {
		env := c.Services[nodes[i]].Environment
		if m.ID != env["RINGKV_ID"] || m.Status != "joined" || m.Liveness != "alive" || m.Zone != env["RINGKV_ZONE"] {
			t.Errorf("member %+v, want %s joined and alive in zone %s", m, env["RINGKV_ID"], env["RINGKV_ZONE"])
		}
	}
}
