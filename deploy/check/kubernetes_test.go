package check

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"

	"github.com/ringkv/ringkv/node"
)

const manifestDir = "deploy/kubernetes"

// manifests are the objects of deploy/kubernetes, decoded strictly.
type manifests struct {
	sts      *appsv1.StatefulSet
	services map[string]*corev1.Service
	pdb      *policyv1.PodDisruptionBudget
}

// decodeManifest decodes one YAML document into the typed object its
// apiVersion and kind name; an unknown field, a duplicate key or a kind
// the deployment does not use is an error.
func decodeManifest(doc []byte) (any, error) {
	var tm metav1.TypeMeta
	if err := yaml.Unmarshal(doc, &tm); err != nil {
		return nil, err
	}
	var obj any
	switch tm.APIVersion + " " + tm.Kind {
	case "apps/v1 StatefulSet":
		obj = &appsv1.StatefulSet{}
	case "v1 Service":
		obj = &corev1.Service{}
	case "policy/v1 PodDisruptionBudget":
		obj = &policyv1.PodDisruptionBudget{}
	default:
		return nil, fmt.Errorf("unexpected object %s %s", tm.APIVersion, tm.Kind)
	}
	if err := yaml.UnmarshalStrict(doc, obj); err != nil {
		return nil, fmt.Errorf("%s: %w", tm.Kind, err)
	}
	return obj, nil
}

func loadManifests(t *testing.T) manifests {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(repoPath(manifestDir), "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests in %s: %v", manifestDir, err)
	}
	m := manifests{services: map[string]*corev1.Service{}}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range splitYAMLDocuments(b) {
			obj, err := decodeManifest(doc)
			if err != nil {
				t.Fatalf("%s, document %d: %v", filepath.Base(f), i+1, err)
			}
			switch o := obj.(type) {
			case *appsv1.StatefulSet:
				if m.sts != nil {
					t.Fatalf("%s: a second StatefulSet", filepath.Base(f))
				}
				m.sts = o
			case *corev1.Service:
				m.services[o.Name] = o
			case *policyv1.PodDisruptionBudget:
				if m.pdb != nil {
					t.Fatalf("%s: a second PodDisruptionBudget", filepath.Base(f))
				}
				m.pdb = o
			}
		}
	}
	if m.sts == nil || m.pdb == nil || len(m.services) != 2 {
		t.Fatalf("want one StatefulSet, two Services and one PodDisruptionBudget, got %v, %d, %v", m.sts != nil, len(m.services), m.pdb != nil)
	}
	return m
}

// headless returns the StatefulSet's governing Service, and client the
// other one.
func (m manifests) headless() *corev1.Service { return m.services[m.sts.Spec.ServiceName] }

func (m manifests) client() *corev1.Service {
	for name, s := range m.services {
		if name != m.sts.Spec.ServiceName {
			return s
		}
	}
	return nil
}

func (m manifests) container(t *testing.T, init bool, name string) corev1.Container {
	t.Helper()
	list := m.sts.Spec.Template.Spec.Containers
	if init {
		list = m.sts.Spec.Template.Spec.InitContainers
	}
	for _, c := range list {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no container %q (init: %v)", name, init)
	return corev1.Container{}
}

// The StatefulSet's containers, by name.
const (
	mainName = "ringkv"
	initName = "node-cert"
)

func envVar(c corev1.Container, name string) (corev1.EnvVar, bool) {
	for _, e := range c.Env {
		if e.Name == name {
			return e, true
		}
	}
	return corev1.EnvVar{}, false
}

// resolvePort finds the container port a Service or probe port names.
func resolvePort(c corev1.Container, p intstr.IntOrString, protocol corev1.Protocol) (corev1.ContainerPort, bool) {
	if protocol == "" {
		protocol = corev1.ProtocolTCP
	}
	for _, cp := range c.Ports {
		proto := cp.Protocol
		if proto == "" {
			proto = corev1.ProtocolTCP
		}
		if proto != protocol {
			continue
		}
		if (p.Type == intstr.String && cp.Name == p.StrVal) || (p.Type == intstr.Int && cp.ContainerPort == p.IntVal) {
			return cp, true
		}
	}
	return corev1.ContainerPort{}, false
}

// listenPort checks that the serve flag name is "$(POD_IP):PORT" and
// returns PORT.
func listenPort(t *testing.T, flags map[string]string, name string) int32 {
	t.Helper()
	v, ok := flags[name]
	if !ok {
		t.Fatalf("serve has no --%s", name)
	}
	host, port := hostPort(t, "--"+name, v)
	if host != "$(POD_IP)" {
		t.Errorf("--%s=%s: want the pod IP, $(POD_IP): a node advertises the address it listens on", name, v)
	}
	return int32(port)
}

func TestKubernetesManifestsDecodeStrictly(t *testing.T) {
	m := loadManifests(t)
	if m.headless() == nil || m.client() == nil {
		t.Fatalf("serviceName %q: want it among the Services %v, beside a client Service", m.sts.Spec.ServiceName, slices.Sorted(maps.Keys(m.services)))
	}
	// The strictness itself: an unknown field fails the decoding, at the
	// top and deep inside.
	b := readRepoFile(t, manifestDir+"/statefulset.yaml")
	for _, bad := range []string{
		strings.Replace(string(b), "\nspec:\n", "\nspec:\n  replica: 3\n", 1),
		strings.Replace(string(b), "readinessProbe:\n", "readinessProbe:\n            httpGett: {}\n", 1),
	} {
		if bad == string(b) {
			t.Fatal("the strictness check found nothing to change in statefulset.yaml")
		}
		if _, err := decodeManifest([]byte(bad)); err == nil || !strings.Contains(err.Error(), "unknown field") {
			t.Errorf("a StatefulSet with an unknown field decoded with error %v, want an unknown field error", err)
		}
	}
}

func TestKubernetesStatefulSet(t *testing.T) {
	m := loadManifests(t)
	sts := m.sts
	pod := sts.Spec.Template
	podLabels := labels.Set(pod.Labels)
	mainC := m.container(t, false, mainName)
	initC := m.container(t, true, initName)
	if len(mainC.Args) == 0 || mainC.Args[0] != "serve" {
		t.Fatalf("container %s args %q: want serve and its flags", mainName, mainC.Args)
	}
	flags, _ := flagValues(mainC.Args[1:])
	httpPort, rpcPort, gossipPort := listenPort(t, flags, "http"), listenPort(t, flags, "rpc"), listenPort(t, flags, "gossip")
	respPort := listenPort(t, flags, "resp")

	t.Run("replicas", func(t *testing.T) {
		if sts.Spec.Replicas == nil || *sts.Spec.Replicas != 3 {
			t.Errorf("replicas %v, want 3", sts.Spec.Replicas)
		}
		if sts.Spec.PodManagementPolicy != appsv1.ParallelPodManagement {
			t.Errorf("podManagementPolicy %q, want Parallel (a lone pod is never ready)", sts.Spec.PodManagementPolicy)
		}
		if flags["id"] != "$(POD_NAME)" {
			t.Errorf("--id=%q, want the pod name, $(POD_NAME)", flags["id"])
		}
	})

	t.Run("downward API", func(t *testing.T) {
		for _, c := range []corev1.Container{mainC, initC} {
			for name, path := range map[string]string{"POD_NAME": "metadata.name", "POD_NAMESPACE": "metadata.namespace", "POD_IP": "status.podIP"} {
				e, ok := envVar(c, name)
				if !ok || e.ValueFrom == nil || e.ValueFrom.FieldRef == nil || e.ValueFrom.FieldRef.FieldPath != path {
					t.Errorf("container %s: env %s is not the downward API's %s", c.Name, name, path)
				}
			}
		}
		zone, ok := envVar(mainC, "RINGKV_ZONE")
		if !ok || zone.ValueFrom == nil || zone.ValueFrom.FieldRef == nil {
			t.Errorf("RINGKV_ZONE is not set from the downward API")
		}
	})

	t.Run("container ports", func(t *testing.T) {
		for _, want := range []struct {
			name  string
			port  int32
			proto corev1.Protocol
		}{
			{"http", httpPort, corev1.ProtocolTCP},
			{"rpc", rpcPort, corev1.ProtocolTCP},
			{"gossip", gossipPort, corev1.ProtocolTCP},
			{"gossip-udp", gossipPort, corev1.ProtocolUDP},
			{"resp", respPort, corev1.ProtocolTCP},
		} {
			cp, ok := resolvePort(mainC, intstr.FromString(want.name), want.proto)
			if !ok || cp.ContainerPort != want.port {
				t.Errorf("container port %s/%s is %d (found: %v), want %d, the port of the serve flag", want.name, want.proto, cp.ContainerPort, ok, want.port)
			}
		}
	})

	t.Run("probes", func(t *testing.T) {
		for _, p := range []struct {
			what  string
			probe *corev1.Probe
			path  string
		}{
			{"readinessProbe", mainC.ReadinessProbe, "/ready"},
			{"livenessProbe", mainC.LivenessProbe, "/health"},
		} {
			if p.probe == nil || p.probe.HTTPGet == nil {
				t.Errorf("%s: want an httpGet probe", p.what)
				continue
			}
			g := p.probe.HTTPGet
			cp, ok := resolvePort(mainC, g.Port, corev1.ProtocolTCP)
			if g.Path != p.path || !ok || cp.ContainerPort != httpPort {
				t.Errorf("%s: GET %s on port %s (container port %d), want %s on the --http port %d", p.what, g.Path, g.Port.String(), cp.ContainerPort, p.path, httpPort)
			}
			if g.Scheme != corev1.URISchemeHTTPS {
				t.Errorf("%s: scheme %q, want HTTPS: the node serves TLS", p.what, g.Scheme)
			}
		}
	})

	t.Run("services", func(t *testing.T) {
		h := m.headless()
		if h.Spec.ClusterIP != corev1.ClusterIPNone || !h.Spec.PublishNotReadyAddresses {
			t.Errorf("Service %s: clusterIP %q publishNotReadyAddresses %v, want None and true", h.Name, h.Spec.ClusterIP, h.Spec.PublishNotReadyAddresses)
		}
		want := map[string][]string{h.Name: {"http", "rpc", "gossip", "gossip-udp"}, m.client().Name: {"http", "rpc", "resp"}}
		for name, svc := range m.services {
			var got []string
			for _, sp := range svc.Spec.Ports {
				got = append(got, sp.Name)
				target := sp.TargetPort
				if target.Type == intstr.Int && target.IntVal == 0 {
					target = intstr.FromInt32(sp.Port)
				}
				cp, ok := resolvePort(mainC, target, sp.Protocol)
				if !ok || cp.ContainerPort != sp.Port || cp.Name != sp.Name {
					t.Errorf("Service %s port %s (%d -> %s/%s): container port %q %d (found: %v), want the same name and number", name, sp.Name, sp.Port, target.String(), sp.Protocol, cp.Name, cp.ContainerPort, ok)
				}
			}
			sort.Strings(got)
			if w := slices.Sorted(slices.Values(want[name])); !slices.Equal(got, w) {
				t.Errorf("Service %s has ports %q, want %q", name, got, w)
			}
			if len(svc.Spec.Selector) == 0 || !labels.SelectorFromSet(svc.Spec.Selector).Matches(podLabels) {
				t.Errorf("Service %s selector %v does not select the pods (labels %v)", name, svc.Spec.Selector, podLabels)
			}
		}
	})

	t.Run("selectors", func(t *testing.T) {
		for what, sel := range map[string]*metav1.LabelSelector{"StatefulSet": sts.Spec.Selector, "PodDisruptionBudget": m.pdb.Spec.Selector} {
			s, err := metav1.LabelSelectorAsSelector(sel)
			if err != nil || s.Empty() || !s.Matches(podLabels) {
				t.Errorf("%s selector %v (%v) does not select the pods (labels %v)", what, sel, err, podLabels)
			}
		}
		if mu := m.pdb.Spec.MaxUnavailable; mu == nil || mu.Type != intstr.Int || mu.IntVal != 1 || m.pdb.Spec.MinAvailable != nil {
			t.Errorf("PodDisruptionBudget maxUnavailable %v minAvailable %v, want maxUnavailable 1", mu, m.pdb.Spec.MinAvailable)
		}
	})

	t.Run("volumes", func(t *testing.T) {
		vols := map[string]corev1.Volume{}
		for _, v := range pod.Spec.Volumes {
			vols[v.Name] = v
		}
		claims := map[string]bool{}
		for _, c := range sts.Spec.VolumeClaimTemplates {
			claims[c.Name] = true
		}
		used := map[string]bool{}
		for _, c := range slices.Concat(pod.Spec.InitContainers, pod.Spec.Containers) {
			for _, vm := range c.VolumeMounts {
				_, isVol := vols[vm.Name]
				if !isVol && !claims[vm.Name] {
					t.Errorf("container %s mounts %q at %s: no such volume or volumeClaimTemplate", c.Name, vm.Name, vm.MountPath)
				}
				used[vm.Name] = true
			}
		}
		for name := range vols {
			if !used[name] {
				t.Errorf("volume %q is mounted by no container", name)
			}
		}
		for name := range claims {
			if !used[name] {
				t.Errorf("volumeClaimTemplate %q is mounted by no container", name)
			}
		}
		data := envOrFlag(t, mainC, flags, "RINGKV_DATA", "data")
		if vm, ok := mountOf(mainC, data); !ok || !claims[vm.Name] || vm.MountPath != data {
			t.Errorf("the data directory %s is not the mount of a volumeClaimTemplate", data)
		}
	})

	t.Run("secure", func(t *testing.T) {
		for _, c := range []corev1.Container{mainC, initC} {
			all := strings.Join(slices.Concat(c.Command, c.Args), " ")
			if strings.Contains(all, "--insecure") || strings.Contains(all, "-insecure") {
				t.Errorf("container %s runs with --insecure", c.Name)
			}
		}
		certs := envOrFlag(t, mainC, flags, "RINGKV_CERTS_DIR", "certs-dir")
		certsMount, ok := mountOf(mainC, certs)
		if !ok {
			t.Fatalf("the certs directory %s is not mounted", certs)
		}
		key := envOrFlag(t, mainC, flags, "RINGKV_GOSSIP_KEY_FILE", "gossip-key-file")
		if vm, ok := mountOf(mainC, key); !ok || volume(pod.Spec, vm.Name).Secret == nil {
			t.Errorf("the gossip key %s is not in a Secret volume", key)
		}

		// The init container writes the node certificate into the volume
		// the node reads it from, signed with a CA key that only it mounts.
		if len(initC.Args) < 2 || initC.Args[0] != "certs" || initC.Args[1] != "create-node" {
			t.Fatalf("init container %s args %q: want certs create-node", initName, initC.Args)
		}
		if initC.Image != mainC.Image {
			t.Errorf("init container image %s, want the node's, %s", initC.Image, mainC.Image)
		}
		cflags, hosts := flagValues(initC.Args[2:])
		if vm, ok := mountOf(initC, cflags["certs-dir"]); !ok || vm.Name != certsMount.Name || vm.MountPath != cflags["certs-dir"] {
			t.Errorf("the init container writes to %s, not the volume %q the node reads its certificates from", cflags["certs-dir"], certsMount.Name)
		}
		caMount, ok := mountOf(initC, cflags["ca-key"])
		if !ok || volume(pod.Spec, caMount.Name).Secret == nil {
			t.Fatalf("the CA key %s is not in a Secret volume of the init container", cflags["ca-key"])
		}
		for _, vm := range mainC.VolumeMounts {
			if vm.Name == caMount.Name {
				t.Errorf("the node container mounts the CA key's volume %q: only the init container may", vm.Name)
			}
		}
		if cflags["id"] != flags["id"] {
			t.Errorf("the certificate's --id=%s is not the node's --id=%s (a peer joins only if they match)", cflags["id"], flags["id"])
		}
		for _, want := range []string{
			"$(POD_IP)", // peers dial the advertised pod IP and check it
			fmt.Sprintf("$(POD_NAME).%s.$(POD_NAMESPACE).svc.cluster.local", m.headless().Name),
			fmt.Sprintf("%s.$(POD_NAMESPACE).svc.cluster.local", m.client().Name),
		} {
			if !slices.Contains(hosts, want) {
				t.Errorf("the node certificate's hosts %q lack %s", hosts, want)
			}
		}
	})

	t.Run("join", func(t *testing.T) {
		peers, ok := envVar(mainC, "PEERS")
		if !ok {
			t.Fatal("no PEERS: the addresses the pods --join through")
		}
		var want []string
		for i := range min(3, int(*sts.Spec.Replicas)) {
			want = append(want, fmt.Sprintf("%s-%d.%s.$(POD_NAMESPACE).svc.cluster.local:%d", sts.Name, i, m.headless().Name, gossipPort))
		}
		if got := strings.Split(peers.Value, ","); !slices.Equal(got, want) {
			t.Errorf("PEERS %q, want the first pods' gossip addresses %q", got, want)
		}
		script := strings.Join(mainC.Command, "\n")
		for _, want := range []string{"$PEERS", "RINGKV_JOIN", "${FOUNDER:-" + sts.Name + "-0}", `exec ringkv "$@"`} {
			if !strings.Contains(script, want) {
				t.Errorf("the container's command does not use %s", want)
			}
		}
		// Kubernetes would expand a $(NAME) of the script itself.
		if regexp.MustCompile(`\$\(`).MatchString(strings.Join(mainC.Command, "")) {
			t.Errorf("the command has $(...), which Kubernetes would expand as a variable: avoid command substitution in the script")
		}
	})

	t.Run("placement", func(t *testing.T) {
		aa := pod.Spec.Affinity
		if aa == nil || aa.PodAntiAffinity == nil {
			t.Fatal("no pod anti-affinity")
		}
		req := aa.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution
		if len(req) != 1 || req[0].TopologyKey != "kubernetes.io/hostname" || !selects(req[0].LabelSelector, podLabels) {
			t.Errorf("required anti-affinity %+v, want one term on kubernetes.io/hostname selecting the pods", req)
		}
		pref := aa.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution
		if len(pref) != 1 || pref[0].PodAffinityTerm.TopologyKey != "topology.kubernetes.io/zone" || !selects(pref[0].PodAffinityTerm.LabelSelector, podLabels) {
			t.Errorf("preferred anti-affinity %+v, want one term on topology.kubernetes.io/zone selecting the pods", pref)
		}
	})

	t.Run("lifecycle", func(t *testing.T) {
		if mainC.Lifecycle == nil || mainC.Lifecycle.PreStop == nil || mainC.Lifecycle.PreStop.Exec == nil {
			t.Fatal("no preStop exec hook")
		}
		g := pod.Spec.TerminationGracePeriodSeconds
		if g == nil || *g < 30 {
			t.Errorf("terminationGracePeriodSeconds %v, want at least 30: closing a node takes seconds", g)
		}
	})
}

// envOrFlag returns the container's setting of a serve option: the flag,
// else the plain env value.
func envOrFlag(t *testing.T, c corev1.Container, flags map[string]string, env, flag string) string {
	t.Helper()
	if v, ok := flags[flag]; ok {
		return v
	}
	if e, ok := envVar(c, env); ok && e.ValueFrom == nil && e.Value != "" {
		return e.Value
	}
	t.Fatalf("container %s sets neither --%s nor %s", c.Name, flag, env)
	return ""
}

// mountOf returns the container's mount that holds path.
func mountOf(c corev1.Container, path string) (corev1.VolumeMount, bool) {
	for _, vm := range c.VolumeMounts {
		if path == vm.MountPath || strings.HasPrefix(path, strings.TrimSuffix(vm.MountPath, "/")+"/") {
			return vm, true
		}
	}
	return corev1.VolumeMount{}, false
}

func volume(spec corev1.PodSpec, name string) corev1.Volume {
	for _, v := range spec.Volumes {
		if v.Name == name {
			return v
		}
	}
	return corev1.Volume{}
}

func selects(sel *metav1.LabelSelector, l labels.Set) bool {
	s, err := metav1.LabelSelectorAsSelector(sel)
	return err == nil && !s.Empty() && s.Matches(l)
}

// simPod is one simulated pod: what the downward API would report.
type simPod struct {
	name, namespace, ip string
	labels              map[string]string
}

func (p simPod) field(t *testing.T, path string) string {
	t.Helper()
	switch {
	case path == "metadata.name":
		return p.name
	case path == "metadata.namespace":
		return p.namespace
	case path == "status.podIP":
		return p.ip
	case strings.HasPrefix(path, "metadata.labels['"):
		return p.labels[strings.TrimSuffix(strings.TrimPrefix(path, "metadata.labels['"), "']")]
	}
	t.Fatalf("downward API field %s is not simulated", path)
	return ""
}

// containerEnv evaluates c's environment for pod as the kubelet would:
// values with $(NAME) expanded from the container's variables defined
// before them, downward API fields, and an optional ConfigMap key that
// does not exist (unset). It returns the container's variables (what
// $(NAME) in the command and args refers to) and the process environment
// (the image's variables, overridden by the container's). rewrite maps
// each value (paths, names) to the simulation's.
func containerEnv(t *testing.T, c corev1.Container, pod simPod, image map[string]string, rewrite func(string) string) (defined, env map[string]string) {
	t.Helper()
	defined = map[string]string{}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			defined[e.Name] = expandK8s(e.Value, defined)
		case e.ValueFrom.FieldRef != nil:
			defined[e.Name] = pod.field(t, e.ValueFrom.FieldRef.FieldPath)
		case e.ValueFrom.ConfigMapKeyRef != nil && e.ValueFrom.ConfigMapKeyRef.Optional != nil && *e.ValueFrom.ConfigMapKeyRef.Optional:
			// The ConfigMap does not exist: the variable stays unset.
		default:
			t.Fatalf("container %s: env %s: source not simulated", c.Name, e.Name)
		}
	}
	env = map[string]string{}
	for k, v := range image {
		env[k] = rewrite(v)
	}
	for k, v := range defined {
		env[k] = rewrite(v)
	}
	return defined, env
}

func environ(vars map[string]string, binDir string) []string {
	env := withoutEnv("PATH=" + binDir + string(os.PathListSeparator) + os.Getenv("PATH"))
	for k, v := range vars {
		env = append(env, k+"="+v)
	}
	return env
}

// mountRewriter returns a function that replaces each of c's mount paths,
// where it stands as a path of its own in a string, by the directory that
// simulates the volume (in one pass, so that a directory is never
// rewritten again).
func mountRewriter(c corev1.Container, dirs map[string]string) func(string) string {
	targets := map[string]string{}
	for _, vm := range c.VolumeMounts {
		targets[vm.MountPath] = dirs[vm.Name]
	}
	return pathRewriter(targets)
}

// pathRewriter returns a function that replaces, in one pass, each
// target path standing as a path of its own (after the start, "=", a
// space or a quote; before "/", the end, a space or a quote) by its
// replacement.
func pathRewriter(targets map[string]string) func(string) string {
	paths := slices.Collect(maps.Keys(targets))
	slices.SortFunc(paths, func(a, b string) int { return len(b) - len(a) })
	before := func(c byte) bool { return c == '=' || c == ' ' || c == '\t' || c == '\n' || c == '"' || c == '\'' }
	after := func(c byte) bool { return c == '/' || before(c) }
	return func(s string) string {
		var b strings.Builder
		for i := 0; i < len(s); i++ {
			if i == 0 || before(s[i-1]) {
				if p := pathAt(paths, s, i, after); p != "" {
					b.WriteString(targets[p])
					i += len(p) - 1
					continue
				}
			}
			b.WriteByte(s[i])
		}
		return b.String()
	}
}

// pathAt returns the first of paths that s has at i, followed by the end
// or a byte for which after is true; "" if none.
func pathAt(paths []string, s string, i int, after func(byte) bool) string {
	for _, p := range paths {
		if strings.HasPrefix(s[i:], p) && (i+len(p) == len(s) || after(s[i+len(p)])) {
			return p
		}
	}
	return ""
}

// TestKubernetesPodsFormACluster runs the StatefulSet's pods as processes
// on three loopback addresses: each pod's init container, then its
// container's command and args, with the downward API, the Kubernetes
// $(VAR) expansion and the volumes simulated (Secrets made as README.md
// says), and checks that they form one secure cluster whose probes
// answer. Cluster DNS is simulated by writing the pods' addresses in
// place of their names.
func TestKubernetesPodsFormACluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three ringkv processes")
	}
	m := loadManifests(t)
	sts, mainC, initC := m.sts, m.container(t, false, mainName), m.container(t, true, initName)
	img := loadImageDefaults(t)
	bin := ringkvBinary(t)
	var ports []int
	for _, p := range mainC.Ports {
		ports = append(ports, int(p.ContainerPort))
	}
	prefix := loopbackNet(t, ports)
	const ns = "ringkv-test"
	dir := t.TempDir()

	// The Secrets, as README.md makes them.
	secrets := map[string]string{}
	for _, v := range sts.Spec.Template.Spec.Volumes {
		if v.Secret != nil {
			secrets[v.Secret.SecretName] = filepath.Join(dir, "secret-"+v.Secret.SecretName)
		}
	}
	if secrets["ringkv-ca"] == "" || secrets["ringkv-gossip"] == "" {
		t.Fatalf("Secret volumes %v: want ringkv-ca and ringkv-gossip, as README.md makes them", secrets)
	}
	env := withoutEnv()
	run(t, env, "ringkv", "certs", "create-ca", "--certs-dir", secrets["ringkv-ca"])
	run(t, env, "ringkv", "certs", "create-gossip-key", "--certs-dir", secrets["ringkv-gossip"])

	replicas := int(*sts.Spec.Replicas)
	pods := make([]simPod, replicas)
	dns := map[string]string{}
	for i := range pods {
		pods[i] = simPod{
			name: fmt.Sprintf("%s-%d", sts.Name, i), namespace: ns, ip: prefix + strconv.Itoa(i+1),
			labels: map[string]string{"topology.kubernetes.io/zone": "zone-" + string(rune('a'+i))},
		}
		dns[fmt.Sprintf("%s.%s.%s.svc.cluster.local", pods[i].name, sts.Spec.ServiceName, ns)] = pods[i].ip
	}
	resolve := func(s string) string {
		for name, ip := range dns {
			s = strings.ReplaceAll(s, name, ip)
		}
		return s
	}
	var procs []*process
	for _, pod := range pods {
		vols := map[string]string{}
		for _, v := range sts.Spec.Template.Spec.Volumes {
			if v.Secret != nil {
				vols[v.Name] = secrets[v.Secret.SecretName]
			} else {
				vols[v.Name] = filepath.Join(dir, pod.name, v.Name)
			}
		}
		for _, c := range sts.Spec.VolumeClaimTemplates {
			vols[c.Name] = filepath.Join(dir, pod.name, c.Name)
		}
		for _, d := range vols {
			if err := os.MkdirAll(d, 0o700); err != nil {
				t.Fatal(err)
			}
		}
		for _, c := range []corev1.Container{initC, mainC} {
			paths := mountRewriter(c, vols)
			defined, vars := containerEnv(t, c, pod, img.env, func(s string) string { return resolve(paths(s)) })
			argv := slices.Concat(c.Command, c.Args)
			if len(c.Command) == 0 {
				argv = slices.Concat(img.entrypoint, c.Args)
			}
			for i := range argv {
				argv[i] = paths(expandK8s(argv[i], defined))
			}
			if argv[0] == "ringkv" {
				argv[0] = bin
			}
			if c.Name == initC.Name {
				run(t, environ(vars, filepath.Dir(bin)), argv[0], argv[1:]...)
				continue
			}
			procs = append(procs, start(t, pod.name, environ(vars, filepath.Dir(bin)), argv[0], argv[1:]...))
		}
	}

	// The probes, as the kubelet makes them (HTTPS, no client certificate).
	hc := httpsClient(t, filepath.Join(secrets["ringkv-ca"], "ca.crt"))
	httpPort, _ := resolvePort(mainC, mainC.ReadinessProbe.HTTPGet.Port, corev1.ProtocolTCP)
	url := func(pod simPod, path string) string {
		return fmt.Sprintf("https://%s:%d%s", pod.ip, httpPort.ContainerPort, path)
	}
	ctx := context.Background()
	for _, pod := range pods {
		for _, probe := range []*corev1.Probe{mainC.ReadinessProbe, mainC.LivenessProbe} {
			waitFor(t, 90*time.Second, pod.name+" "+probe.HTTPGet.Path, func() error {
				if err := exited(procs); err != nil {
					return err
				}
				code, err := getJSON(ctx, hc, url(pod, probe.HTTPGet.Path), nil)
				if err == nil && code != http.StatusOK {
					err = fmt.Errorf("HTTP %d", code)
				}
				return err
			})
		}
	}
	var st node.ClusterStatus
	if code, err := getJSON(ctx, hc, url(pods[0], "/api/cluster/status"), &st); err != nil || code != http.StatusOK {
		t.Fatalf("cluster status: HTTP %d, %v", code, err)
	}
	if len(st.Members) != replicas {
		t.Fatalf("cluster status lists %d members, want %d: %+v", len(st.Members), replicas, st.Members)
	}
	for i, mem := range st.Members {
		want := pods[i]
		if mem.ID != want.name || mem.Status != "joined" || mem.Zone != want.labels["topology.kubernetes.io/zone"] ||
			mem.RPCAddr != fmt.Sprintf("%s:%d", want.ip, listenPortOf(t, mainC, "rpc")) {
			t.Errorf("member %+v, want %s joined in zone %s at its pod IP", mem, want.name, want.labels["topology.kubernetes.io/zone"])
		}
	}
}

// listenPortOf returns the container port named name.
func listenPortOf(t *testing.T, c corev1.Container, name string) int32 {
	t.Helper()
	cp, ok := resolvePort(c, intstr.FromString(name), corev1.ProtocolTCP)
	if !ok {
		t.Fatalf("container %s has no port %s", c.Name, name)
	}
	return cp.ContainerPort
}
