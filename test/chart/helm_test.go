package chart

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// release names a Helm release: name and namespace.
type release struct{ name, namespace string }

// defaultRelease is how the docs install netguard.
var defaultRelease = release{name: "netguard", namespace: "netguard"}

// helm runs helm with args and returns its stdout; stderr is in the error.
func helm(args ...string) ([]byte, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(helmBin, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	// Keep helm's cache, config and data out of the user's home.
	tmp := os.TempDir()
	cmd.Env = append(os.Environ(),
		"HELM_CACHE_HOME="+filepath.Join(tmp, "netguard-helm", "cache"),
		"HELM_CONFIG_HOME="+filepath.Join(tmp, "netguard-helm", "config"),
		"HELM_DATA_HOME="+filepath.Join(tmp, "netguard-helm", "data"),
	)
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), fmt.Errorf("helm %s: %w\n%s%s", strings.Join(args, " "), err, stderr.String(), stdout.String())
	}
	return stdout.Bytes(), nil
}

// valuesFile writes values as a YAML file and returns its path ("" for none).
func valuesFile(t *testing.T, values map[string]any) string {
	t.Helper()
	if len(values) == 0 {
		return ""
	}
	data, err := yaml.Marshal(values)
	if err != nil {
		t.Fatal(err)
	}
	// Not t.TempDir: helm splits --values on commas, which test names have.
	dir, err := os.MkdirTemp("", "netguard-values-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "values.yaml")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// templateArgs are the arguments of helm template for rel and values.
func templateArgs(t *testing.T, rel release, values map[string]any) []string {
	args := []string{"template", rel.name, chartDir, "--namespace", rel.namespace}
	if f := valuesFile(t, values); f != "" {
		args = append(args, "--values", f)
	}
	return args
}

// renderRaw runs helm template and returns its output.
func renderRaw(t *testing.T, rel release, values map[string]any) ([]byte, error) {
	t.Helper()
	return helm(templateArgs(t, rel, values)...)
}

// render runs helm template and returns the objects, in helm's order.
func render(t *testing.T, rel release, values map[string]any) objects {
	t.Helper()
	out, err := renderRaw(t, rel, values)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := decodeObjects(out)
	if err != nil {
		t.Fatalf("decoding the rendered chart: %v", err)
	}
	return objs
}

// decodeObjects splits a multi-document YAML stream into objects.
func decodeObjects(data []byte) (objects, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	var objs objects
	for {
		var m map[string]any
		err := dec.Decode(&m)
		if errors.Is(err, io.EOF) {
			return objs, nil
		}
		if err != nil {
			return nil, err
		}
		if len(m) == 0 {
			continue
		}
		objs = append(objs, &unstructured.Unstructured{Object: m})
	}
}

// objects is a rendered chart.
type objects []*unstructured.Unstructured

// find returns the object of kind and name, or nil.
func (o objects) find(kind, name string) *unstructured.Unstructured {
	for _, obj := range o {
		if obj.GetKind() == kind && obj.GetName() == name {
			return obj
		}
	}
	return nil
}

// ofKind returns the objects of kind.
func (o objects) ofKind(kind string) objects {
	var out objects
	for _, obj := range o {
		if obj.GetKind() == kind {
			out = append(out, obj)
		}
	}
	return out
}

// names returns "Kind/name" of every object.
func (o objects) names() []string {
	var out []string
	for _, obj := range o {
		out = append(out, obj.GetKind()+"/"+obj.GetName())
	}
	return out
}

// get converts the object of kind and name into into, failing t when the
// chart did not render it.
func (o objects) get(t *testing.T, kind, name string, into any) {
	t.Helper()
	obj := o.find(kind, name)
	if obj == nil {
		t.Fatalf("the chart renders no %s %s; it renders %v", kind, name, o.names())
	}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(obj.Object, into, true); err != nil {
		t.Fatalf("%s %s does not convert to %T: %v", kind, name, into, err)
	}
}
