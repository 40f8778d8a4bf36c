// Package check holds the tests of ringkv's deployment files: the
// Dockerfile, deploy/compose.yaml, the Kubernetes manifests in
// deploy/kubernetes, the Grafana dashboard and the Prometheus alerts. It is
// its own Go module, so that the main module never depends on the
// Kubernetes API types or on Prometheus' PromQL parser; it uses the main
// module's code through a replace directive (../..).
//
// Run it from this directory:
//
//	go test ./...          # everything, two small real clusters included (about a minute)
//	go test -short ./...   # the static checks and the in-process node only
//
// What is checked, and where:
//
//   - dockerfile_test.go: the build stage runs the one build command
//     (CGO_ENABLED=0 go build -trimpath -ldflags '-s -w' -o /out/ringkv
//     ./cmd/ringkv); the final stage copies that binary, runs as a
//     non-root user, exposes the three ports, and declares the data
//     volume that RINGKV_DATA names.
//   - kubernetes_test.go: every manifest decodes strictly (an unknown
//     field fails) into the typed k8s.io/api objects; the listen flags,
//     container ports, probes, Services, PodDisruptionBudget, selectors,
//     volumes, certificates and --join agree with each other. Without
//     -short, the StatefulSet's init and main containers run as
//     processes (three pods on loopback addresses, with the Kubernetes
//     $(VAR) expansion and the downward API values filled in) and must
//     form a secure cluster whose readiness and liveness probes answer.
//   - compose_test.go: the same for deploy/compose.yaml: addresses,
//     published ports, certificates and joins agree; without -short its
//     certs service and three nodes run as processes and form a cluster.
//   - metrics_test.go: an in-process node with the Prometheus registry
//     `ringkv serve` builds (plus the Go and process collectors) serves a
//     few requests; every metric that a dashboard panel or an alert rule
//     uses must be one it exports, every expression must parse as PromQL,
//     and docs/OPERATIONS.md must explain every alert.
package check
