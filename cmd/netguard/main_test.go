package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/netguard-io/netguard/config"
)

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestServeMergesFlagsAndConfigFile(t *testing.T) {
	tests := map[string]struct {
		args    []string
		file    string
		wantErr string
		check   func(*testing.T, *serveOptions, *config.Config)
	}{
		"defaults": {check: func(t *testing.T, o *serveOptions, c *config.Config) {
			if o.server.Port != 9443 || o.server.MetricsBindAddress != ":8080" || o.server.HealthProbeBindAddress != ":8081" {
				t.Errorf("flag defaults = %+v", o.server)
			}
			if c.DNS.Ndots != 2 {
				t.Errorf("config defaults not applied: ndots %d", c.DNS.Ndots)
			}
		}},
		"flags and file": {
			args: []string{"--port", "10250", "--cert-dir", "/certs", "--kubeconfig", "/kc"},
			file: "dns:\n  ndots: 3\nnamespaces:\n  mode: cluster-wide\n",
			check: func(t *testing.T, o *serveOptions, c *config.Config) {
				if o.server.Port != 10250 || o.server.CertDir != "/certs" || o.kubeconfig != "/kc" {
					t.Errorf("flags = %+v kubeconfig=%q", o.server, o.kubeconfig)
				}
				if c.DNS.Ndots != 3 || c.Namespaces.Mode != config.NamespaceModeClusterWide {
					t.Errorf("file not applied: %+v %+v", c.DNS, c.Namespaces)
				}
			},
		},
		"bad file value":  {file: "dns:\n  ndots: 0\n", wantErr: "dns.ndots"},
		"unknown flag":    {args: []string{"--prot", "1"}, wantErr: "unknown flag: --prot"},
		"positional args": {args: []string{"extra"}, wantErr: "unknown command"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			var gotOpts *serveOptions
			var gotCfg *config.Config
			root := &rootOptions{}
			cmd := newServeCommand(root, func(_ context.Context, o *serveOptions, c *config.Config) error {
				gotOpts, gotCfg = o, c
				return nil
			})
			args := tc.args
			if tc.file != "" {
				// The root command's persistent flag, for serve alone.
				cmd.Flags().StringVar(&root.configFile, "config", "", "")
				args = append(args, "--config", writeFile(t, "netguard.yaml", tc.file))
			}
			cmd.SetArgs(args)
			cmd.SetOut(&bytes.Buffer{})
			cmd.SetErr(&bytes.Buffer{})
			err := cmd.Execute()
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, gotOpts, gotCfg)
		})
	}
}

// runRoot runs the full command line and returns stdout, stderr and the error.
func runRoot(t *testing.T, stdin string, args ...string) (string, string, error) {
	t.Helper()
	root := newRootCommand()
	var out, errOut bytes.Buffer
	root.SetArgs(args)
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetIn(strings.NewReader(stdin))
	err := root.Execute()
	return out.String(), errOut.String(), err
}

const multiDoc = `apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
data:
  a: "1"
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: registry.example/web:2
---
apiVersion: batch/v1
kind: CronJob
metadata:
  name: report
spec:
  schedule: "@daily"
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: OnFailure
          containers:
          - name: report
            image: registry.example/report:1
---
apiVersion: v1
kind: Pod
metadata:
  name: skipped
  annotations:
    netguard.io/inject: "false"
spec:
  containers:
  - name: app
    image: registry.example/app:1
`

func TestMutateKeepsOrderAndPassesOtherObjectsThrough(t *testing.T) {
	file := writeFile(t, "app.yaml", multiDoc)
	out, stderr, err := runRoot(t, "", "mutate", "-f", file, "--cluster-dns", "10.96.0.10")
	if err != nil {
		t.Fatalf("mutate: %v\n%s", err, stderr)
	}
	docs := strings.Split(out, "---\n")
	if len(docs) != 4 {
		t.Fatalf("got %d documents, want 4:\n%s", len(docs), out)
	}
	in := strings.Split(multiDoc, "---\n")
	if docs[0] != in[0] {
		t.Errorf("ConfigMap changed:\n%s", docs[0])
	}
	if docs[3] != in[3] {
		t.Errorf("opted-out pod changed:\n%s", docs[3])
	}
	for i, name := range []string{"web", "report"} {
		d := docs[i+1]
		if !strings.Contains(d, "name: "+name) || !strings.Contains(d, "single-request-reopen") || !strings.Contains(d, "dnsPolicy: None") || !strings.Contains(d, "default.svc.cluster.local") {
			t.Errorf("%s template not mutated:\n%s", name, d)
		}
		if strings.Contains(d, "creationTimestamp") || strings.Contains(d, "status: {}") {
			t.Errorf("%s gained fields netguard does not set:\n%s", name, d)
		}
	}
	if !strings.Contains(stderr, "document 4") || !strings.Contains(stderr, "netguard.io/inject=false") {
		t.Errorf("stderr does not say why document 4 is unchanged: %q", stderr)
	}
}

func TestMutateReadsStandardInputAndIsIdempotent(t *testing.T) {
	once, _, err := runRoot(t, multiDoc, "mutate", "-f", "-", "--cluster-dns", "10.96.0.10")
	if err != nil {
		t.Fatal(err)
	}
	twice, _, err := runRoot(t, once, "mutate", "-f", "-", "--cluster-dns", "10.96.0.10")
	if err != nil {
		t.Fatal(err)
	}
	if once != twice {
		t.Errorf("second pass changed the output:\n--- once\n%s\n--- twice\n%s", once, twice)
	}
}

func TestMutateErrorsNameFileAndDocument(t *testing.T) {
	file := writeFile(t, "bad.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\nkind: [\n")
	_, _, err := runRoot(t, "", "mutate", "-f", file)
	if err == nil || !strings.Contains(err.Error(), file) || !strings.Contains(err.Error(), "document 2") {
		t.Fatalf("error = %v, want it to name %s and document 2", err, file)
	}
	_, _, err = runRoot(t, "", "mutate")
	if err == nil || !strings.Contains(err.Error(), "filename") {
		t.Fatalf("missing -f: error = %v", err)
	}
}

func TestResolvPrintsHardenedFile(t *testing.T) {
	node := writeFile(t, "resolv.conf", "nameserver 192.0.2.1\nsearch example.org corp.example\noptions edns0\n")
	cases := map[string]struct{ image, options, resolver string }{
		"glibc image":        {"python:3.12", "single-request-reopen ndots:2", "resolver glibc (image python:3.12)"},
		"musl image":         {"alpine:3.20", "ndots:5", "resolver musl (image alpine:3.20)"},
		"unclassified image": {"app", "single-request-reopen ndots:5", "resolver unknown (image app unclassified)"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			pod := writeFile(t, "pod.yaml", "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nspec:\n  containers: [{name: a, image: \""+tc.image+"\"}]\n")
			out, stderr, err := runRoot(t, "", "resolv", "-f", pod, "--namespace", "team", "--node-resolv", node, "--cluster-dns", "10.96.0.10")
			if err != nil {
				t.Fatal(err)
			}
			want := "search team.svc.cluster.local svc.cluster.local cluster.local\nnameserver 10.96.0.10\noptions " + tc.options + "\n"
			if out != want {
				t.Errorf("resolv.conf:\n%s\nwant:\n%s", out, want)
			}
			if !strings.Contains(stderr, ": "+tc.resolver+"\n") {
				t.Errorf("stderr %q does not name %q", stderr, tc.resolver)
			}
		})
	}
	pod := writeFile(t, "pod.yaml", "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nspec:\n  containers: [{name: a, image: app}]\n")
	if _, _, err := runRoot(t, "", "resolv", "-f", pod); err == nil || !strings.Contains(err.Error(), "--cluster-dns") {
		t.Errorf("missing --cluster-dns: error = %v", err)
	}
}
