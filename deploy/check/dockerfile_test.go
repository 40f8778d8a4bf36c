package check

import (
	"encoding/json"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// buildCommand is the one way the image builds the binary: static (no
// cgo), without local paths, without symbol tables.
const buildCommand = `CGO_ENABLED=0 go build -trimpath -ldflags '-s -w' -o /out/ringkv ./cmd/ringkv`

// dockerInstruction is one Dockerfile instruction, continuation lines
// joined.
type dockerInstruction struct {
	cmd  string // upper case: FROM, RUN, COPY, ...
	args string
}

// dockerStage is one FROM and the instructions after it.
type dockerStage struct {
	image, name string
	inst        []dockerInstruction
}

// parseDockerfile splits a Dockerfile into its stages, with the global
// ARGs' defaults substituted in the FROM lines.
func parseDockerfile(t *testing.T, src string) []dockerStage {
	t.Helper()
	var logical []string
	var cur strings.Builder
	for _, line := range strings.Split(src, "\n") {
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "#") || (trimmed == "" && cur.Len() == 0) {
			continue
		}
		if strings.HasSuffix(trimmed, `\`) {
			cur.WriteString(strings.TrimSuffix(trimmed, `\`) + " ")
			continue
		}
		cur.WriteString(trimmed)
		logical = append(logical, cur.String())
		cur.Reset()
	}
	args := map[string]string{}
	var stages []dockerStage
	for _, l := range logical {
		cmd, rest, _ := strings.Cut(l, " ")
		cmd, rest = strings.ToUpper(cmd), strings.TrimSpace(rest)
		switch {
		case cmd == "ARG" && len(stages) == 0:
			k, v, _ := strings.Cut(rest, "=")
			args[k] = v
		case cmd == "FROM":
			f := strings.Fields(rest)
			st := dockerStage{image: expandArgs(f[0], args)}
			if len(f) == 3 && strings.EqualFold(f[1], "AS") {
				st.name = f[2]
			}
			stages = append(stages, st)
		case len(stages) == 0:
			t.Fatalf("Dockerfile: %s before the first FROM", cmd)
		default:
			st := &stages[len(stages)-1]
			st.inst = append(st.inst, dockerInstruction{cmd, rest})
		}
	}
	return stages
}

// expandArgs substitutes ${NAME} and $NAME from vars.
func expandArgs(s string, vars map[string]string) string {
	return regexp.MustCompile(`\$\{?(\w+)\}?`).ReplaceAllStringFunc(s, func(m string) string {
		return vars[strings.Trim(m, "${}")]
	})
}

// all returns the arguments of every instruction cmd of the stage.
func (s dockerStage) all(cmd string) []string {
	var out []string
	for _, in := range s.inst {
		if in.cmd == cmd {
			out = append(out, in.args)
		}
	}
	return out
}

// env returns the stage's ENV settings (KEY=VALUE form).
func (s dockerStage) env(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, e := range s.all("ENV") {
		for _, kv := range strings.Fields(e) {
			k, v, ok := strings.Cut(kv, "=")
			if !ok {
				t.Fatalf("Dockerfile: ENV %q: use KEY=VALUE", e)
			}
			out[k] = v
		}
	}
	return out
}

// jsonForm decodes an exec-form instruction argument (["a", "b"]).
func jsonForm(t *testing.T, what, s string) []string {
	t.Helper()
	var out []string
	if err := json.Unmarshal([]byte(s), &out); err != nil {
		t.Fatalf("Dockerfile: %s %s: want the exec (JSON) form: %v", what, s, err)
	}
	return out
}

// imageDefaults is what the image gives a container: its environment,
// entrypoint and command.
type imageDefaults struct {
	env        map[string]string
	entrypoint []string
	cmd        []string
}

func loadImageDefaults(t *testing.T) imageDefaults {
	t.Helper()
	stages := parseDockerfile(t, string(readRepoFile(t, "Dockerfile")))
	final := stages[len(stages)-1]
	ep, cmd := final.all("ENTRYPOINT"), final.all("CMD")
	if len(ep) != 1 || len(cmd) != 1 {
		t.Fatalf("Dockerfile: final stage has %d ENTRYPOINT and %d CMD, want one each", len(ep), len(cmd))
	}
	return imageDefaults{env: final.env(t), entrypoint: jsonForm(t, "ENTRYPOINT", ep[0]), cmd: jsonForm(t, "CMD", cmd[0])}
}

func TestDockerfile(t *testing.T) {
	stages := parseDockerfile(t, string(readRepoFile(t, "Dockerfile")))
	if len(stages) != 2 {
		t.Fatalf("Dockerfile has %d stages, want 2 (build, final)", len(stages))
	}
	build, final := stages[0], stages[1]

	t.Run("build stage", func(t *testing.T) {
		if !strings.HasPrefix(build.image, "golang:") || build.name == "" {
			t.Errorf("first stage is FROM %s AS %q, want a golang image with a name", build.image, build.name)
		}
		var builds []string
		for _, r := range build.all("RUN") {
			if strings.Contains(r, "go build") {
				builds = append(builds, strings.Join(strings.Fields(r), " "))
			}
		}
		if len(builds) != 1 || builds[0] != buildCommand {
			t.Errorf("build stage runs %q, want exactly one go build: %q", builds, buildCommand)
		}
		// The modules are downloaded from go.mod and go.sum alone, before
		// the sources are copied (a layer that survives source changes).
		copies := build.all("COPY")
		if len(copies) < 2 || copies[0] != "go.mod go.sum ./" || copies[1] != ". ." {
			t.Errorf("build stage copies %q, want go.mod go.sum first, then the sources", copies)
		}
		if !slices.Contains(build.all("RUN"), "go mod download") {
			t.Errorf("build stage does not run go mod download")
		}
	})

	t.Run("final stage", func(t *testing.T) {
		out := strings.Fields(buildCommand)
		bin := out[slices.Index(out, "-o")+1]
		copies := final.all("COPY")
		want := "--from=" + build.name + " " + bin + " /usr/local/bin/ringkv"
		if !slices.Contains(copies, want) {
			t.Errorf("final stage copies %q, want %q", copies, want)
		}
		users := final.all("USER")
		if len(users) != 1 {
			t.Fatalf("final stage has %d USER instructions, want 1", len(users))
		}
		if u, _, _ := strings.Cut(users[0], ":"); u == "0" || u == "root" {
			t.Errorf("final stage runs as %s, want a non-root user", users[0])
		}
		img := loadImageDefaults(t)
		if !slices.Equal(img.entrypoint, []string{"ringkv"}) || !slices.Equal(img.cmd, []string{"serve"}) {
			t.Errorf("ENTRYPOINT %q CMD %q, want [ringkv] [serve]", img.entrypoint, img.cmd)
		}
		var exposed []string
		for _, e := range final.all("EXPOSE") {
			exposed = append(exposed, strings.Fields(e)...)
		}
		for _, p := range []string{"8081", "9001", "7001", "7001/udp"} { // serve's default ports
			if !slices.Contains(exposed, p) {
				t.Errorf("EXPOSE %q lacks %s", exposed, p)
			}
		}
		vols := final.all("VOLUME")
		data := img.env["RINGKV_DATA"]
		if len(vols) != 1 || data == "" || !slices.Equal(jsonForm(t, "VOLUME", vols[0]), []string{data}) {
			t.Errorf("VOLUME %q and ENV RINGKV_DATA=%q: want one volume, the data directory", vols, data)
		}
	})

	t.Run("dockerignore keeps the sources", func(t *testing.T) {
		checkDockerignore(t)
	})
}

// checkDockerignore fails if a .dockerignore pattern excludes go.mod,
// go.sum or the directory of any package cmd/ringkv is built from.
func checkDockerignore(t *testing.T) {
	var patterns []*regexp.Regexp
	var sources []string
	for _, line := range strings.Split(string(readRepoFile(t, ".dockerignore")), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if strings.HasPrefix(line, "!") {
			t.Fatalf(".dockerignore: exceptions (%s) are not supported by this check", line)
		}
		sources = append(sources, line)
		patterns = append(patterns, dockerignorePattern(line))
	}
	cmd := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.Dir}}{{end}}", "./cmd/ringkv")
	cmd.Dir = repo
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	root, err := filepath.Abs(repo)
	if err != nil {
		t.Fatal(err)
	}
	paths := []string{"go.mod", "go.sum"}
	for _, dir := range strings.Fields(string(out)) {
		if rel, err := filepath.Rel(root, dir); err == nil && !strings.HasPrefix(rel, "..") {
			paths = append(paths, filepath.ToSlash(rel)+"/x.go")
		}
	}
	if len(paths) < 10 {
		t.Fatalf("go list found %d paths of the main module, want the packages of cmd/ringkv", len(paths))
	}
	for _, p := range paths {
		// A pattern excludes a path if it matches the path or any parent.
		parts := strings.Split(p, "/")
		for i := range parts {
			prefix := strings.Join(parts[:i+1], "/")
			for j, re := range patterns {
				if re.MatchString(prefix) {
					t.Errorf(".dockerignore pattern %q excludes %s, which the build needs", sources[j], p)
				}
			}
		}
	}
}

// dockerignorePattern turns a .dockerignore pattern into a regexp over
// context-relative paths: ** spans directories, * and ? do not.
func dockerignorePattern(p string) *regexp.Regexp {
	p = strings.TrimPrefix(strings.TrimSuffix(p, "/"), "/")
	var b strings.Builder
	b.WriteString("^")
	for i := 0; i < len(p); i++ {
		switch {
		case strings.HasPrefix(p[i:], "**/"):
			b.WriteString("(.*/)?")
			i += 2
		case strings.HasPrefix(p[i:], "**"):
			b.WriteString(".*")
			i++
		case p[i] == '*':
			b.WriteString("[^/]*")
		case p[i] == '?':
			b.WriteString("[^/]")
		default:
			b.WriteString(regexp.QuoteMeta(p[i : i+1]))
		}
	}
	b.WriteString("$")
	return regexp.MustCompile(b.String())
}
