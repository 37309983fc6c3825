package manifest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	evanjsonpatch "github.com/evanphx/json-patch/v5"
	jsonpatch "gomodules.xyz/jsonpatch/v2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// Document is one YAML document of a manifest stream.
type Document struct {
	// Source names the file ("-" for standard input).
	Source string
	// Index is the document's 1-based position in its source.
	Index int
	// Raw is the document as read, without the separator.
	Raw []byte
	// Object is the decoded object, nil for an empty document.
	Object *unstructured.Unstructured
}

// String names the document for error messages: "deploy.yaml: document 2 (Deployment web)".
func (d Document) String() string {
	s := fmt.Sprintf("%s: document %d", d.Source, d.Index)
	if d.Object != nil {
		name := d.Object.GetName()
		if ns := d.Object.GetNamespace(); ns != "" {
			name = ns + "/" + name
		}
		s += fmt.Sprintf(" (%s %s)", d.Object.GetKind(), name)
	}
	return s
}

// ReadFile reads all documents from path; "-" reads standard input.
func ReadFile(path string) ([]Document, error) {
	if path == "-" {
		return Read(os.Stdin, "-")
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return Read(f, path)
}

// Read splits r into YAML documents and decodes each. An error names the
// source and the document.
func Read(r io.Reader, source string) ([]Document, error) {
	reader := utilyaml.NewYAMLReader(bufio.NewReader(r))
	var docs []Document
	for i := 1; ; i++ {
		raw, err := reader.Read()
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: document %d: %w", source, i, err)
		}
		doc := Document{Source: source, Index: i, Raw: raw}
		js, err := yaml.YAMLToJSON(raw)
		if err != nil {
			return nil, fmt.Errorf("%s: document %d: not valid YAML: %w", source, i, err)
		}
		if t := bytes.TrimSpace(js); len(t) > 0 && !bytes.Equal(t, []byte("null")) {
			obj := &unstructured.Unstructured{}
			if err := obj.UnmarshalJSON(js); err != nil {
				return nil, fmt.Errorf("%s: document %d: not a Kubernetes object: %w", source, i, err)
			}
			doc.Object = obj
		}
		docs = append(docs, doc)
	}
}

// templatePaths gives where each workload kind keeps its pod template.
var templatePaths = map[schema.GroupKind][]string{
	{Group: "apps", Kind: "Deployment"}:  {"spec", "template"},
	{Group: "apps", Kind: "StatefulSet"}: {"spec", "template"},
	{Group: "apps", Kind: "DaemonSet"}:   {"spec", "template"},
	{Group: "apps", Kind: "ReplicaSet"}:  {"spec", "template"},
	{Group: "batch", Kind: "Job"}:        {"spec", "template"},
	{Group: "batch", Kind: "CronJob"}:    {"spec", "jobTemplate", "spec", "template"},
}

// HasPod reports whether the document is a Pod or a workload with a pod template.
func (d Document) HasPod() bool {
	if d.Object == nil {
		return false
	}
	gk := d.Object.GroupVersionKind().GroupKind()
	if gk == (schema.GroupKind{Kind: "Pod"}) {
		return true
	}
	_, ok := templatePaths[gk]
	return ok
}

// Pod returns the document's pod: the Pod itself, or a Pod rendered from the
// workload's template (namespace from the workload, or defaultNamespace).
// ok is false for documents without one.
func (d Document) Pod(defaultNamespace string) (pod *corev1.Pod, ok bool, err error) {
	if !d.HasPod() {
		return nil, false, nil
	}
	ns := d.Object.GetNamespace()
	if ns == "" {
		ns = defaultNamespace
	}
	if d.Object.GetKind() == "Pod" {
		pod = &corev1.Pod{}
		if err := fromUnstructured(d.Object.Object, pod); err != nil {
			return nil, false, fmt.Errorf("%s: %w", d, err)
		}
		pod.Namespace = ns
		return pod, true, nil
	}
	path := templatePaths[d.Object.GroupVersionKind().GroupKind()]
	raw, found, err := unstructured.NestedMap(d.Object.Object, path...)
	if err != nil {
		return nil, false, fmt.Errorf("%s: %s: %w", d, strings.Join(path, "."), err)
	}
	if !found {
		return nil, false, fmt.Errorf("%s: %s is missing", d, strings.Join(path, "."))
	}
	tmpl := &corev1.PodTemplateSpec{}
	if err := fromUnstructured(raw, tmpl); err != nil {
		return nil, false, fmt.Errorf("%s: %s: %w", d, strings.Join(path, "."), err)
	}
	pod = &corev1.Pod{ObjectMeta: tmpl.ObjectMeta, Spec: tmpl.Spec}
	pod.Namespace = ns
	if pod.Name == "" {
		pod.GenerateName = d.Object.GetName() + "-"
	}
	return pod, true, nil
}

// WithPod returns the document's YAML after replacing its pod with mutated:
// only the differences between the pod as read and mutated are applied to
// the original object, so untouched fields keep their values. A document
// whose pod is unchanged comes back byte for byte as read.
func (d Document) WithPod(original, mutated *corev1.Pod) ([]byte, error) {
	before, err := json.Marshal(podPart(d, original))
	if err != nil {
		return nil, err
	}
	after, err := json.Marshal(podPart(d, mutated))
	if err != nil {
		return nil, err
	}
	ops, err := jsonpatch.CreatePatch(before, after)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", d, err)
	}
	if len(ops) == 0 {
		return d.Raw, nil
	}
	prefix := ""
	if d.Object.GetKind() != "Pod" {
		prefix = "/" + strings.Join(templatePaths[d.Object.GroupVersionKind().GroupKind()], "/")
	}
	for i := range ops {
		ops[i].Path = prefix + ops[i].Path
	}
	return applyOps(d, ops)
}

// podPart is the slice of the pod that lives in the document: for a
// template, only its metadata labels/annotations and spec.
func podPart(d Document, pod *corev1.Pod) any {
	if d.Object.GetKind() == "Pod" {
		return pod
	}
	meta := pod.ObjectMeta.DeepCopy()
	meta.Namespace, meta.GenerateName = "", ""
	return &corev1.PodTemplateSpec{ObjectMeta: *meta, Spec: pod.Spec}
}

func applyOps(d Document, ops []jsonpatch.Operation) ([]byte, error) {
	patchJSON, err := json.Marshal(ops)
	if err != nil {
		return nil, err
	}
	patch, err := evanjsonpatch.DecodePatch(patchJSON)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", d, err)
	}
	doc, err := d.Object.MarshalJSON()
	if err != nil {
		return nil, err
	}
	// Missing intermediate objects (a pod without dnsConfig) are created.
	out, err := patch.ApplyWithOptions(doc, &evanjsonpatch.ApplyOptions{EnsurePathExistsOnAdd: true, SupportNegativeIndices: true})
	if err != nil {
		return nil, fmt.Errorf("%s: applying changes: %w", d, err)
	}
	return yaml.JSONToYAML(out)
}

func fromUnstructured(in map[string]any, out any) error {
	return runtime.DefaultUnstructuredConverter.FromUnstructured(in, out)
}
