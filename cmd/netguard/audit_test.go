package main

import (
	"bytes"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/netguard-io/netguard/audit"
)

func TestAuditExitStatus(t *testing.T) {
	pod := []corev1.ObjectReference{{Kind: "Pod", Namespace: "team", Name: "web-1"}}
	result := func(outcome audit.Outcome) audit.Result {
		return audit.Result{Policy: audit.PolicyPods, Rule: audit.RuleDNSSidecar, Result: outcome, Resources: pod}
	}
	tests := map[string]struct {
		summary audit.Summary
		results []audit.Result
		want    int
	}{
		"nothing found":            {want: 0},
		"only exceptions":          {audit.Summary{Skip: 1}, []audit.Result{result(audit.Skip)}, 0},
		"a warning":                {audit.Summary{Warn: 1}, []audit.Result{result(audit.Warn)}, 1},
		"a failure and exceptions": {audit.Summary{Fail: 1, Skip: 1}, []audit.Result{result(audit.Fail), result(audit.Skip)}, 1},
	}
	for name, tc := range tests {
		for _, output := range []string{outputTable, outputJSON} {
			t.Run(name+"/"+output, func(t *testing.T) {
				rep := &audit.Report{Header: audit.Header{Summary: tc.summary}, Results: tc.results}
				var out bytes.Buffer
				err := writeAudit(rep, output, &out)
				if got := exitCode(err); got != tc.want {
					t.Errorf("exit %d, want %d (err %v)", got, tc.want, err)
				}
				if !strings.Contains(out.String(), map[string]string{outputTable: "Summary:", outputJSON: `"summary"`}[output]) {
					t.Errorf("output lacks its summary:\n%s", out.String())
				}
			})
		}
	}
}

func TestAuditUsageErrors(t *testing.T) {
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	tests := map[string]struct {
		args []string
		want string
	}{
		"unknown output":            {[]string{"audit", "-o", "yaml"}, `--output "yaml": want table or json`},
		"no kubeconfig, no cluster": {[]string{"audit"}, "no --kubeconfig and not running in a cluster"},
		"bad settings":              {[]string{"audit", "--config", writeFile(t, "bad.yaml", "dns:\n  ndots: 0\n")}, "dns.ndots"},
		"arguments":                 {[]string{"audit", "team"}, "unknown command"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			out, _, err := runRoot(t, "", tc.args...)
			if exitCode(err) != 2 || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v (exit %d), want exit 2 and %q", err, exitCode(err), tc.want)
			}
			if out != "" {
				t.Errorf("output on an error: %q", out)
			}
		})
	}
}
