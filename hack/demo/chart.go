package main

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"

	admissionregv1 "k8s.io/api/admissionregistration/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/netguard-io/netguard/internal/manifest"
	"github.com/netguard-io/netguard/test/framework"
)

// renderChart renders charts/netguard as `helm install` would, with
// netguard's self-managed TLS instead of cert-manager.
func renderChart() ([]manifest.Document, error) {
	helm, err := exec.Command("hack/helm.sh").Output()
	if err != nil {
		return nil, fmt.Errorf("finding helm (hack/helm.sh): %w", err)
	}
	out, err := exec.Command(strings.TrimSpace(string(helm)), "template", "netguard", "charts/netguard",
		"--namespace", "netguard", "--set", "certManager.enabled=false").CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("helm template: %w\n%s", err, out)
	}
	return manifest.Read(bytes.NewReader(out), "helm template charts/netguard")
}

// applyChart creates the rendered objects but the webhook configurations,
// which it returns to create once netguard serves (see localWebhook), and
// the settings file from the chart's ConfigMap.
func applyChart(ctx context.Context, cp *framework.ControlPlane, docs []manifest.Document) ([]*unstructured.Unstructured, []byte, error) {
	var webhooks []*unstructured.Unstructured
	var config []byte
	for _, doc := range docs {
		obj := doc.Object
		if obj == nil {
			continue
		}
		if kind := obj.GetKind(); kind == "MutatingWebhookConfiguration" || kind == "ValidatingWebhookConfiguration" {
			webhooks = append(webhooks, obj)
			continue
		}
		if obj.GetKind() == "ConfigMap" {
			data, _, _ := unstructured.NestedString(obj.Object, "data", "config.yaml")
			config = []byte(data)
		}
		if err := cp.Client.Create(ctx, obj); err != nil {
			return nil, nil, fmt.Errorf("%s: %w", doc, err)
		}
		fmt.Printf("  created %s %s\n", obj.GetKind(), obj.GetName())
	}
	if config == nil {
		return nil, nil, fmt.Errorf("the chart rendered no ConfigMap with config.yaml")
	}
	return webhooks, config, nil
}

// localWebhook converts a rendered webhook configuration, with every
// webhook pointed at the local server s and trusting caBundle; ok is false
// for other objects.
func localWebhook(s *framework.Server, caBundle []byte, obj *unstructured.Unstructured) (client.Object, bool, error) {
	var out client.Object
	var configs []*admissionregv1.WebhookClientConfig
	switch obj.GetKind() {
	case "MutatingWebhookConfiguration":
		wh := &admissionregv1.MutatingWebhookConfiguration{}
		if err := fromUnstructured(obj, wh); err != nil {
			return nil, false, err
		}
		for i := range wh.Webhooks {
			configs = append(configs, &wh.Webhooks[i].ClientConfig)
		}
		out = wh
	case "ValidatingWebhookConfiguration":
		wh := &admissionregv1.ValidatingWebhookConfiguration{}
		if err := fromUnstructured(obj, wh); err != nil {
			return nil, false, err
		}
		for i := range wh.Webhooks {
			configs = append(configs, &wh.Webhooks[i].ClientConfig)
		}
		out = wh
	default:
		return nil, false, nil
	}
	for _, cc := range configs {
		path := ""
		if cc.Service != nil && cc.Service.Path != nil {
			path = *cc.Service.Path
		}
		url := s.WebhookURL(path)
		cc.Service, cc.URL, cc.CABundle = nil, &url, caBundle
	}
	return out, true, nil
}

func fromUnstructured(obj *unstructured.Unstructured, out any) error {
	return runtime.DefaultUnstructuredConverter.FromUnstructured(obj.Object, out)
}
