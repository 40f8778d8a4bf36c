package lint

import (
	"bufio"
	"bytes"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/ringkv/ringkv"

// allowed lists, for each package, the ringkv packages it may import
// directly (non-test code). A package missing here may not exist.
var allowed = map[string][]string{
	"ring":                 {"internal/crc", "internal/varint", "internal/partid"},
	"auth":                 {"internal/varint"},
	"ring/gossip":          {"ring", "internal/crc", "internal/varint", "internal/promreg"},
	"replica":              {"internal/crc", "internal/varint", "internal/partid", "internal/promreg", "internal/linger"},
	"proto":                {},
	"proto/kvpb":           {},
	"coordinator":          {"ring", "replica", "proto/kvpb", "consensus", "internal/rpcconn", "auth", "internal/workgroup", "internal/crc", "internal/loglimit", "internal/varint", "internal/promreg"},
	"consensus":            {"ring", "replica", "proto/kvpb", "internal/rpcconn", "internal/crc", "internal/varint", "internal/raftwal", "internal/promreg"},
	"antientropy":          {"ring", "proto/kvpb", "internal/rpcconn", "internal/promreg"},
	"client":               {"proto/kvpb", "internal/rpcconn", "internal/pki", "auth", "internal/workgroup"},
	"bench":                {"client"},
	"backup":               {"client", "proto/kvpb", "replica", "internal/crc", "internal/varint"},
	"examples/quickstart":  {"client"},
	"node":                 {"coordinator", "consensus", "antientropy", "replica", "ring", "ring/gossip", "proto/kvpb", "internal/pki", "auth", "resp", "internal/loglimit", "internal/rpcconn", "internal/raftwal"},
	"resp":                 {"coordinator", "consensus", "replica", "auth", "internal/loglimit"},
	"cmd/ringkv":           {"*"},
	"internal/testcluster": {"internal/pki", "internal/rpcconn", "internal/hosts"},
	"internal/hosts":       {},
	"internal/loglimit":    {},
	"internal/idleprocs":   {},
	"internal/workgroup":   {},
	"internal/fault":       {},
	"internal/testlog":     {},
	"internal/rpcconn":     {},
	"internal/pki":         {},
	"internal/chaos":       {"client", "internal/testcluster", "internal/pki", "internal/hosts", "internal/txncheck"},
	"internal/txncheck":    {},
	"internal/crc":         {},
	"internal/raftwal":     {"internal/crc", "internal/promreg", "internal/linger"},
	"internal/promreg":     {},
	"internal/linger":      {},
	"internal/partid":      {},
	"internal/varint":      {},
	"internal/lint":        {},
}

func listPackages(t *testing.T) map[string][]string {
	t.Helper()
	cmd := exec.Command("go", "list", "-f", `{{.ImportPath}} {{join .Imports " "}}`, module+"/...")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	pkgs := map[string][]string{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		pkg := strings.TrimPrefix(strings.TrimPrefix(fields[0], module), "/")
		var ours []string
		for _, imp := range fields[1:] {
			if rest, ok := strings.CutPrefix(imp, module+"/"); ok {
				ours = append(ours, rest)
			}
		}
		pkgs[pkg] = ours
	}
	return pkgs
}

func TestImportGraph(t *testing.T) {
	for pkg, imports := range listPackages(t) {
		allow, known := allowed[pkg]
		if !known {
			t.Errorf("package %s is not in the import table of internal/lint: add it (and to docs/ARCHITECTURE.md)", pkg)
			continue
		}
		if slices.Contains(allow, "*") {
			continue
		}
		for _, imp := range imports {
			if !slices.Contains(allow, imp) {
				t.Errorf("%s imports %s: not allowed (may import %v)", pkg, imp, allow)
			}
		}
	}
}

var banned = []struct {
	re   *regexp.Regexp
	why  string
	test bool // also banned in tests
}{
	{regexp.MustCompile(`prometheus\.DefaultRegisterer|prometheus\.MustRegister\(`), "pass a Registerer in Deps", false},
	{regexp.MustCompile(`slog\.SetDefault\(`), "only cmd configures logging", false},
	{regexp.MustCompile(`^func init\(\)`), "no init registration", false},
	{regexp.MustCompile(`\btime\.Sleep\(`), "poll a condition against a deadline instead", true},
}

// TestBannedCalls keeps global state and sleeps out of the code.
func TestBannedCalls(t *testing.T) {
	root := filepath.Join("..", "..")
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "ringkv-data") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, ".pb.go") {
			return nil
		}
		rel, _ := filepath.Rel(root, path)
		if strings.HasPrefix(rel, "cmd"+string(filepath.Separator)) || strings.HasPrefix(rel, filepath.Join("internal", "lint")) {
			return nil
		}
		isTest := strings.HasSuffix(path, "_test.go")
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for i, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(strings.TrimSpace(line), "//") {
				continue
			}
			for _, ban := range banned {
				if (ban.test || !isTest) && ban.re.MatchString(line) {
					t.Errorf("%s:%d: %s", rel, i+1, ban.why)
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// sequential lists the packages that run one goroutine, code and tests
// alike: scripts/test.sh runs their tests without the race detector,
// which has nothing to find there and makes them many times slower.
var sequential = []string{"ring"}

// TestSequentialPackages keeps those packages free of go statements,
// t.Parallel and the sync packages, so that running them without -race
// stays sound.
func TestSequentialPackages(t *testing.T) {
	for _, pkg := range sequential {
		dir := filepath.Join("..", "..", filepath.FromSlash(pkg))
		files, err := filepath.Glob(filepath.Join(dir, "*.go"))
		if err != nil || len(files) == 0 {
			t.Fatalf("%s: no Go files (%v)", pkg, err)
		}
		fset := token.NewFileSet()
		for _, path := range files {
			f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
			if err != nil {
				t.Fatal(err)
			}
			for _, imp := range f.Imports {
				if p := strings.Trim(imp.Path.Value, `"`); p == "sync" || p == "sync/atomic" {
					t.Errorf("%s imports %s: %s must stay sequential (scripts/test.sh runs it without -race)", fset.Position(imp.Pos()), p, pkg)
				}
			}
			ast.Inspect(f, func(n ast.Node) bool {
				switch n := n.(type) {
				case *ast.GoStmt:
					t.Errorf("%s: go statement: %s must stay sequential (scripts/test.sh runs it without -race)", fset.Position(n.Pos()), pkg)
				case *ast.SelectorExpr:
					if n.Sel.Name == "Parallel" {
						t.Errorf("%s: Parallel: %s must stay sequential (scripts/test.sh runs it without -race)", fset.Position(n.Pos()), pkg)
					}
				}
				return true
			})
		}
	}
}
