package webhook

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	jsonpatch "github.com/evanphx/json-patch/v5"
	gomodulespatch "gomodules.xyz/jsonpatch/v2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"sigs.k8s.io/yaml"

	"github.com/netguard-io/netguard/config"
	"github.com/netguard-io/netguard/policies/podpolicy"
)

func applyOps(t testing.TB, raw []byte, ops []gomodulespatch.Operation) *corev1.Pod {
	t.Helper()
	js, err := json.Marshal(ops)
	if err != nil {
		t.Fatal(err)
	}
	patch, err := jsonpatch.DecodePatch(js)
	if err != nil {
		t.Fatal(err)
	}
	out, err := patch.Apply(raw)
	if err != nil {
		t.Fatalf("applying %s: %v", js, err)
	}
	pod := &corev1.Pod{}
	if err := json.Unmarshal(out, pod); err != nil {
		t.Fatal(err)
	}
	return pod
}

// configs are the settings the oracle test runs every pod under.
func oracleConfigs() map[string]*config.Config {
	withDNS := func() *config.Config {
		c := config.Default()
		c.DNS.Search.ClusterDNS = "10.96.0.10"
		return c
	}
	port, resolv, plain := withDNS(), withDNS(), withDNS()
	resolv.DNSProxy.Mode = config.DNSProxyModeResolv
	plain.DNSProxy.NativeSidecar = false
	return map[string]*config.Config{"port": port, "resolv": resolv, "plain-container": plain}
}

// TestPodPatchMatchesCreatePatch: the targeted patch and a full
// marshal-and-diff with jsonpatch.CreatePatch give the same pod, for every
// golden input of the pod policies under each sidecar mode.
func TestPodPatchMatchesCreatePatch(t *testing.T) {
	files, err := filepath.Glob("../policies/podpolicy/testdata/golden/*.in.yaml")
	if err != nil || len(files) < 10 {
		t.Fatalf("golden inputs not found (%d, %v)", len(files), err)
	}
	env := podpolicy.Env{Namespace: podpolicy.NamespaceInfo{Name: "team", Labels: map[string]string{podpolicy.LabelInject: podpolicy.LabelInjectEnabled}}, ClusterDNS: "10.96.0.10", Version: "test"}
	patched := 0
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		raw, err := yaml.YAMLToJSON(data)
		if err != nil {
			t.Fatal(err)
		}
		for name, cfg := range oracleConfigs() {
			t.Run(filepath.Base(file)+"/"+name, func(t *testing.T) {
				orig := &corev1.Pod{}
				if err := json.Unmarshal(raw, orig); err != nil {
					t.Fatal(err)
				}
				env.Namespace.Name = orig.Namespace
				result := podpolicy.Mutate(orig, env, cfg)
				ops, err := podPatch(orig, result.Pod)
				if err != nil {
					t.Fatalf("podPatch: %v (applied %v)", err, result.Applied)
				}
				mutated, _ := json.Marshal(result.Pod)
				full, err := gomodulespatch.CreatePatch(raw, mutated)
				if err != nil {
					t.Fatal(err)
				}
				got, want := applyOps(t, raw, ops), applyOps(t, raw, full)
				if !equality.Semantic.DeepEqual(got, want) {
					g, _ := yaml.Marshal(got)
					w, _ := yaml.Marshal(want)
					t.Fatalf("targeted patch and CreatePatch differ:\n--- targeted\n%s\n--- CreatePatch\n%s", g, w)
				}
				if len(ops) > 0 {
					patched++
				}
			})
		}
	}
	if patched < 20 {
		t.Errorf("only %d cases produced a patch; the oracle is not exercising podPatch", patched)
	}
}

// bigPod has n containers of 10 env vars each, the first one nginx with n
// env vars: its size grows linearly with n.
func bigPod(n int) *corev1.Pod {
	pod := &corev1.Pod{}
	pod.Name, pod.Namespace = "big", "team"
	for i := 0; i < n; i++ {
		c := corev1.Container{Name: fmt.Sprintf("c%d", i), Image: "registry.example/app:1"}
		vars := 10
		if i == 0 {
			c.Image, vars = "nginx:1.27", n
		}
		for j := 0; j < vars; j++ {
			c.Env = append(c.Env, corev1.EnvVar{Name: fmt.Sprintf("VAR_%d", j), Value: "some value of moderate length"})
		}
		pod.Spec.Containers = append(pod.Spec.Containers, c)
	}
	return pod
}

// BenchmarkPodPatch compares the targeted patch with a full
// marshal-and-diff (jsonpatch.CreatePatch) as the pod grows (bigPod). Both
// include marshalling what they need.
func BenchmarkPodPatch(b *testing.B) {
	cfg := oracleConfigs()["port"]
	env := podpolicy.Env{Namespace: podpolicy.NamespaceInfo{Name: "team", Labels: map[string]string{podpolicy.LabelInject: podpolicy.LabelInjectEnabled}}, ClusterDNS: "10.96.0.10"}
	for _, n := range []int{10, 100, 1000} {
		orig := bigPod(n)
		raw, _ := json.Marshal(orig)
		mutated := podpolicy.Mutate(orig, env, cfg).Pod
		b.Run(fmt.Sprintf("targeted/n=%d", n), func(b *testing.B) {
			for b.Loop() {
				ops, err := podPatch(orig, mutated)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := json.Marshal(ops); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("createpatch/n=%d", n), func(b *testing.B) {
			for b.Loop() {
				js, _ := json.Marshal(mutated)
				ops, err := gomodulespatch.CreatePatch(raw, js)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := json.Marshal(ops); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
