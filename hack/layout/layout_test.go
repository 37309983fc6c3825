package layout

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/netguard-io/netguard"

// layers are netguard's packages, top to bottom. A package may import the
// packages of the layers below its own; of its own layer only those
// siblings allows. Every package of the module is in a layer, except the
// tooling under hack/ and test/, which may import anything and which no
// layered package imports (but for tests' use of testImports).
var layers = []struct {
	name     string
	packages []string
}{
	{"binary", []string{"cmd/netguard"}},
	{"wiring", []string{"serve"}},
	{"features", []string{
		"webhook", "webhook/services", "webhook/conflicts",
		"controllers/coverage", "controllers/conflicts", "controllers/reports", "controllers/conflicts/conflictstest",
		"audit", "dnsproxy",
	}},
	{"plumbing", []string{"serving", "serving/certs"}},
	{"cluster view", []string{"clusterview", "clusterview/listing", "clusterview/viewtest"}},
	{"rules", []string{"policies/conflicts", "policies/podpolicy", "policies/selectorguard"}},
	{"settings", []string{"config"}},
	{"helpers", []string{"internal/version", "internal/memlimit", "internal/manifest", "internal/testlog"}},
}

// siblings are the imports allowed within a layer.
var siblings = map[string][]string{
	"webhook/conflicts":    {"controllers/conflicts"}, // the detector its handlers ask
	"controllers/reports":  {"audit"},                 // judges the cluster with audit's code
	"serving/certs":        {"serving"},
	"clusterview":          {"clusterview/listing"},
	"clusterview/viewtest": {"clusterview"},
}

// fixtures are test helpers: only tests import them, tests of their own
// layer or of a layer above.
var fixtures = []string{"clusterview/viewtest", "controllers/conflicts/conflictstest"}

// testImports are tooling packages the tests of layered packages may
// import.
var testImports = []string{"test/ports"}

// tooling reports whether p is outside the layers.
func tooling(p string) bool { return strings.HasPrefix(p, "hack/") || strings.HasPrefix(p, "test/") }

// pkg is what `go list -json` says of a package, with module-relative
// paths.
type pkg struct {
	ImportPath                         string
	Imports, TestImports, XTestImports []string
}

// layerOf returns the index of p's layer, or -1.
func layerOf(p string) int {
	for i, l := range layers {
		if slices.Contains(l.packages, p) {
			return i
		}
	}
	return -1
}

// check returns why the imports of pkgs break the layers, one line each.
func check(pkgs []pkg) []string {
	var problems []string
	listed := map[string]bool{}
	for _, p := range pkgs {
		listed[p.ImportPath] = true
		if tooling(p.ImportPath) {
			continue
		}
		from := layerOf(p.ImportPath)
		if from < 0 {
			problems = append(problems, fmt.Sprintf("%s is in no layer: add it to the table in hack/layout/layout_test.go", p.ImportPath))
			continue
		}
		judge := func(imp string, test bool) {
			if imp == p.ImportPath {
				return // an external test imports its package
			}
			how := "imports"
			if test {
				how = "imports in its tests"
			}
			bad := func(why string) {
				problems = append(problems, fmt.Sprintf("%s (%s) %s %s: %s", p.ImportPath, layers[from].name, how, imp, why))
			}
			if tooling(imp) {
				if !test || !slices.Contains(testImports, imp) {
					bad("layered packages do not import tooling (hack/, test/)")
				}
				return
			}
			to := layerOf(imp)
			switch {
			case to < 0:
				bad("the imported package is in no layer")
			case slices.Contains(fixtures, imp) && !test:
				bad("a test fixture, for tests only")
			case slices.Contains(fixtures, imp) && to >= from:
			case to > from:
			case to == from && slices.Contains(siblings[p.ImportPath], imp):
			case to == from:
				bad(fmt.Sprintf("a sibling in the %s layer that the table does not allow", layers[to].name))
			default:
				bad(fmt.Sprintf("a package of the %s layer, above", layers[to].name))
			}
		}
		for _, imp := range p.Imports {
			judge(imp, false)
		}
		for _, imp := range append(slices.Clone(p.TestImports), p.XTestImports...) {
			judge(imp, true)
		}
	}
	for _, l := range layers {
		for _, p := range l.packages {
			if !listed[p] {
				problems = append(problems, fmt.Sprintf("%s is in the %s layer but not in the module: remove it from the table", p, l.name))
			}
		}
	}
	return problems
}

// modulePackages lists the module's packages with their netguard imports.
func modulePackages(t *testing.T) []pkg {
	t.Helper()
	root, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}").Output()
	if err != nil {
		t.Fatalf("go list -m: %v", err)
	}
	cmd := exec.Command("go", "list", "-e", "-json=ImportPath,Imports,TestImports,XTestImports", "./...")
	cmd.Dir = filepath.Clean(strings.TrimSpace(string(root)))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.String())
	}
	local := func(paths []string) []string {
		var out []string
		for _, p := range paths {
			if p == module || strings.HasPrefix(p, module+"/") {
				out = append(out, strings.TrimPrefix(strings.TrimPrefix(p, module), "/"))
			}
		}
		return out
	}
	var pkgs []pkg
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p pkg
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("decoding go list: %v", err)
		}
		p.ImportPath = local([]string{p.ImportPath})[0]
		p.Imports, p.TestImports, p.XTestImports = local(p.Imports), local(p.TestImports), local(p.XTestImports)
		pkgs = append(pkgs, p)
	}
	if len(pkgs) == 0 {
		t.Fatal("go list found no packages")
	}
	return pkgs
}

// TestLayers: no package imports one above it, a sibling the table does
// not allow, a test fixture outside its tests, or tooling.
func TestLayers(t *testing.T) {
	pkgs := modulePackages(t)
	t.Logf("%d packages", len(pkgs))
	for _, problem := range check(pkgs) {
		t.Error(problem)
	}
}

// TestCheckFails: the check names each kind of offending import.
func TestCheckFails(t *testing.T) {
	var all []pkg
	for _, l := range layers {
		for _, p := range l.packages {
			all = append(all, pkg{ImportPath: p})
		}
	}
	with := func(p pkg) []pkg {
		out := slices.Clone(all)
		for i := range out {
			if out[i].ImportPath == p.ImportPath {
				out[i] = p
				return out
			}
		}
		return append(out, p)
	}
	for name, tc := range map[string]struct {
		pkg  pkg
		want string
	}{
		"up a layer":            {pkg{ImportPath: "clusterview", Imports: []string{"webhook/services"}}, "clusterview (cluster view) imports webhook/services: a package of the features layer, above"},
		"sibling without leave": {pkg{ImportPath: "webhook/services", Imports: []string{"controllers/coverage"}}, "a sibling in the features layer that the table does not allow"},
		"fixture outside tests": {pkg{ImportPath: "webhook/services", Imports: []string{"clusterview/viewtest"}}, "a test fixture, for tests only"},
		"fixture from below":    {pkg{ImportPath: "policies/selectorguard", TestImports: []string{"clusterview/viewtest"}}, "a package of the cluster view layer, above"},
		"tooling":               {pkg{ImportPath: "webhook", Imports: []string{"test/framework"}}, "layered packages do not import tooling"},
		"no layer":              {pkg{ImportPath: "newthing"}, "newthing is in no layer"},
	} {
		t.Run(name, func(t *testing.T) {
			problems := check(with(tc.pkg))
			if len(problems) != 1 || !strings.Contains(problems[0], tc.want) {
				t.Errorf("problems = %q, want one containing %q", problems, tc.want)
			}
		})
	}
	if problems := check(with(pkg{ImportPath: "webhook/services", TestImports: []string{"clusterview/viewtest", "test/ports"}})); len(problems) != 0 {
		t.Errorf("a fixture and test/ports in tests: %q", problems)
	}
}
