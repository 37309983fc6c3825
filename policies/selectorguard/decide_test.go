package selectorguard

import (
	"net/http"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/netguard-io/netguard/config"
)

func TestDecide(t *testing.T) {
	deny := Finding{Rule: RuleRevisionSubset, Deny: true, Message: "selector matches 16 of 140 pods", Field: selectorPath, Value: ringLabels}
	warn := Finding{Rule: RuleManyWorkloads, Message: "selector matches pods of 2 workloads", Field: selectorPath, Value: ringLabels}
	plain := service(ringLabels)
	annotated := service(ringLabels, AllowSubsetAnnotation, "ring migration, JIRA-42")
	annotatedEmpty := service(ringLabels, AllowSubsetAnnotation, "")

	tests := map[string]struct {
		findings     []Finding
		mode         config.GuardMode
		svc          *corev1.Service
		wantAllowed  bool
		wantActions  []Action
		wantWarnings []string
		wantReason   string
	}{
		"enforce denies": {
			findings: []Finding{deny, warn}, mode: config.GuardModeEnforce, svc: plain,
			wantActions:  []Action{ActionDenied, ActionWarned},
			wantWarnings: []string{"Service loki/distributor: selector matches pods of 2 workloads"},
		},
		"enforce with only warnings admits": {
			findings: []Finding{warn}, mode: config.GuardModeEnforce, svc: plain, wantAllowed: true,
			wantActions:  []Action{ActionWarned},
			wantWarnings: []string{"Service loki/distributor: selector matches pods of 2 workloads"},
		},
		"enforce, annotated: admitted with the reason": {
			findings: []Finding{deny}, mode: config.GuardModeEnforce, svc: annotated, wantAllowed: true,
			wantActions:  []Action{ActionOverridden},
			wantWarnings: []string{`Service loki/distributor admitted by netguard.io/allow-subset-selector (reason: "ring migration, JIRA-42"): selector matches 16 of 140 pods`},
			wantReason:   "ring migration, JIRA-42",
		},
		"enforce, annotated without a reason": {
			findings: []Finding{deny}, mode: config.GuardModeEnforce, svc: annotatedEmpty, wantAllowed: true,
			wantActions:  []Action{ActionOverridden},
			wantWarnings: []string{"Service loki/distributor admitted by netguard.io/allow-subset-selector (no reason given): selector matches 16 of 140 pods"},
		},
		"warn mode admits with a warning": {
			findings: []Finding{deny, warn}, mode: config.GuardModeWarn, svc: plain, wantAllowed: true,
			wantActions: []Action{ActionWarned, ActionWarned},
			wantWarnings: []string{
				"Service loki/distributor would be denied (service guard in warn mode): selector matches 16 of 140 pods",
				"Service loki/distributor: selector matches pods of 2 workloads",
			},
		},
		"warn mode, annotated": {
			findings: []Finding{deny}, mode: config.GuardModeWarn, svc: annotated, wantAllowed: true,
			wantActions:  []Action{ActionOverridden},
			wantWarnings: []string{`Service loki/distributor admitted by netguard.io/allow-subset-selector (reason: "ring migration, JIRA-42"): selector matches 16 of 140 pods`},
			wantReason:   "ring migration, JIRA-42",
		},
		"dry-run only records": {
			findings: []Finding{deny, warn}, mode: config.GuardModeDryRun, svc: plain, wantAllowed: true,
			wantActions: []Action{ActionDryRun, ActionDryRun},
		},
		"unknown mode enforces": {
			findings: []Finding{deny}, mode: "audit", svc: plain,
			wantActions: []Action{ActionDenied},
		},
		"no findings": {
			mode: config.GuardModeEnforce, svc: plain, wantAllowed: true,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			d := Decide(tc.findings, tc.mode, tc.svc)
			if d.Allowed != tc.wantAllowed {
				t.Errorf("Allowed = %v, want %v", d.Allowed, tc.wantAllowed)
			}
			var actions []Action
			for _, o := range d.Outcomes {
				actions = append(actions, o.Action)
			}
			if !slices.Equal(actions, tc.wantActions) {
				t.Errorf("actions = %v, want %v", actions, tc.wantActions)
			}
			if !slices.Equal(d.Warnings, tc.wantWarnings) {
				t.Errorf("warnings =\n  %q\nwant\n  %q", d.Warnings, tc.wantWarnings)
			}
			if d.OverrideReason != tc.wantReason {
				t.Errorf("OverrideReason = %q, want %q", d.OverrideReason, tc.wantReason)
			}
			if d.Overridden != slices.Contains(tc.wantActions, ActionOverridden) {
				t.Errorf("Overridden = %v", d.Overridden)
			}
			if tc.wantAllowed != (d.Err == nil) {
				t.Fatalf("Err = %v with Allowed %v", d.Err, d.Allowed)
			}
		})
	}
}

func TestDecideDenialIsInvalidOnSelector(t *testing.T) {
	key := revisionKeyFindings(map[string]string{LabelPodTemplateHash: "7d9f8c"})
	findings := append(key, Finding{Rule: RuleRevisionSubset, Deny: true, Message: "selector matches 16 of 140 pods", Field: selectorPath, Value: map[string]string{"app": "distributor"}})
	d := Decide(findings, config.GuardModeEnforce, service(ringLabels))
	if d.Err == nil {
		t.Fatal("no denial")
	}
	if !apierrors.IsInvalid(d.Err) || d.Err.Status().Code != http.StatusUnprocessableEntity {
		t.Errorf("denial is not a 422 Invalid: %v", d.Err)
	}
	st := d.Err.Status()
	if st.Details.Kind != "Service" || st.Details.Name != "distributor" || st.Details.Group != "" {
		t.Errorf("details = %+v", st.Details)
	}
	if len(st.Details.Causes) != 2 {
		t.Fatalf("causes = %+v", st.Details.Causes)
	}
	if f := st.Details.Causes[0].Field; f != "spec.selector[pod-template-hash]" {
		t.Errorf("first cause field = %q", f)
	}
	if f := st.Details.Causes[1].Field; f != "spec.selector" {
		t.Errorf("second cause field = %q", f)
	}
	want := `Service "distributor" is invalid: [spec.selector[pod-template-hash]: Invalid value: "7d9f8c": selector key pod-template-hash names a single revision`
	if !strings.HasPrefix(st.Message, want) {
		t.Errorf("message =\n  %s\nwant prefix\n  %s", st.Message, want)
	}
	if !strings.Contains(st.Message, `spec.selector: Invalid value: {"app":"distributor"}: selector matches 16 of 140 pods`) {
		t.Errorf("message does not show the selector: %s", st.Message)
	}
}

func TestModeFor(t *testing.T) {
	tests := map[string]struct {
		configured  config.GuardMode
		annotations map[string]string
		want        config.GuardMode
		wantErr     bool
	}{
		"no annotation":        {configured: config.GuardModeEnforce, want: config.GuardModeEnforce},
		"namespace warns":      {configured: config.GuardModeEnforce, annotations: map[string]string{NamespaceModeAnnotation: "warn"}, want: config.GuardModeWarn},
		"namespace dry-run":    {configured: config.GuardModeEnforce, annotations: map[string]string{NamespaceModeAnnotation: "dry-run"}, want: config.GuardModeDryRun},
		"namespace enforces":   {configured: config.GuardModeWarn, annotations: map[string]string{NamespaceModeAnnotation: "enforce"}, want: config.GuardModeEnforce},
		"bad value is ignored": {configured: config.GuardModeWarn, annotations: map[string]string{NamespaceModeAnnotation: "off"}, want: config.GuardModeWarn, wantErr: true},
		"other annotations":    {configured: config.GuardModeDryRun, annotations: map[string]string{"netguard.io/ndots": "2"}, want: config.GuardModeDryRun},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := ModeFor(tc.configured, tc.annotations)
			if got != tc.want || (err != nil) != tc.wantErr {
				t.Errorf("ModeFor = %q, %v; want %q, error %v", got, err, tc.want, tc.wantErr)
			}
		})
	}
}
