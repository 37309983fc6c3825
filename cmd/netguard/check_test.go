package main

import (
	"errors"
	"strings"
	"testing"
)

const lokiBefore = `apiVersion: apps/v1
kind: Deployment
metadata: {name: distributor, namespace: loki}
spec:
  replicas: 140
  selector: {matchLabels: {app: distributor}}
  template:
    metadata: {labels: {app: distributor}}
    spec: {containers: [{name: d, image: "grafana/loki:3.0"}]}
---
apiVersion: v1
kind: Service
metadata: {name: distributor, namespace: loki}
spec:
  selector: {app: distributor}
  ports: [{port: 3100}]
`

// lokiAfter is the change behind the outage: one label added to the pod
// template and to the Service selector at once.
var lokiAfter = strings.NewReplacer(
	"labels: {app: distributor}}", `labels: {app: distributor, gossip_ring_member: "true"}}`,
	"selector: {app: distributor}\n", "selector: {app: distributor, gossip_ring_member: \"true\"}\n",
).Replace(lokiBefore)

func exitCode(err error) int {
	var exit *exitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &exit):
		return exit.code
	}
	return 2
}

func TestCheck(t *testing.T) {
	tests := map[string]struct {
		file, against string
		wantCode      int
		wantOut       []string
	}{
		"the outage's change, against the deployed manifests": {
			file: lokiAfter, against: lokiBefore, wantCode: 1,
			wantOut: []string{"denied", "140 pods of Deployment loki/distributor", "gossip_ring_member=true", "netguard.io/allow-subset-selector"},
		},
		"the same change once rolled out": {file: lokiAfter, against: lokiAfter, wantCode: 0},
		"the change with the override annotation": {
			file:     strings.Replace(lokiAfter, "metadata: {name: distributor, namespace: loki}\nspec:\n  selector", "metadata: {name: distributor, namespace: loki, annotations: {netguard.io/allow-subset-selector: \"migration\"}}\nspec:\n  selector", 1),
			against:  lokiBefore,
			wantCode: 0, wantOut: []string{"overridden", "migration"},
		},
		"a new workload and Service together": {file: lokiAfter, wantCode: 0},
		"a selector on pod-template-hash": {
			file:     "apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec:\n  selector: {app: a, pod-template-hash: 5b6c4d}\n",
			wantCode: 1, wantOut: []string{"pod-template-hash"},
		},
		"a LoadBalancer without a class gets a hint": {
			file:     "apiVersion: v1\nkind: Service\nmetadata: {name: lb}\nspec:\n  type: LoadBalancer\n  selector: {app: a}\n",
			wantCode: 0, wantOut: []string{"hint:", "spec.loadBalancerClass"},
		},
		"a selector that matches nothing warns": {
			file:     "apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec:\n  selector: {app: nothing}\n",
			wantCode: 0, wantOut: []string{"warned", "matches no pods"},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			args := []string{"check", "-f", writeFile(t, "new.yaml", tc.file)}
			if tc.against != "" {
				args = append(args, "--against", writeFile(t, "old.yaml", tc.against))
			}
			out, _, err := runRoot(t, "", args...)
			if got := exitCode(err); got != tc.wantCode {
				t.Fatalf("exit %d (%v), want %d; output:\n%s", got, err, tc.wantCode, out)
			}
			for _, want := range tc.wantOut {
				if !strings.Contains(out, want) {
					t.Errorf("output lacks %q:\n%s", want, out)
				}
			}
		})
	}
}

func TestCheckInputErrorsExit2(t *testing.T) {
	_, _, err := runRoot(t, "", "check", "-f", writeFile(t, "bad.yaml", "kind: Deployment\napiVersion: apps/v1\nmetadata: {name: a}\nspec: {replicas: many}\n"))
	if exitCode(err) != 2 || !strings.Contains(err.Error(), "spec.replicas") {
		t.Fatalf("error = %v (exit %d), want exit 2 naming spec.replicas", err, exitCode(err))
	}
}
