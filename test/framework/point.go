package framework

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	admissionregv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilrand "k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/netguard-io/netguard/webhook"
	"github.com/netguard-io/netguard/webhook/services"
)

// The kinds of webhook configuration netguard has (for WaitCalled).
const (
	KindMutating   = "MutatingWebhookConfiguration"
	KindValidating = "ValidatingWebhookConfiguration"
)

// PointWebhooks points every webhook of the Mutating- and
// ValidatingWebhookConfigurations called name at base (https://host:port),
// keeping each webhook's path (from its URL or its Service reference).
// caBundle, unless nil, replaces theirs. A kind with no configuration of
// that name is skipped.
func PointWebhooks(ctx context.Context, c client.Client, base string, caBundle []byte, name string) error {
	point := func(cc *admissionregv1.WebhookClientConfig) error {
		path := ""
		switch {
		case cc.Service != nil && cc.Service.Path != nil:
			path = *cc.Service.Path
		case cc.URL != nil:
			u, err := url.Parse(*cc.URL)
			if err != nil {
				return err
			}
			path = u.Path
		}
		u := base + path
		cc.Service, cc.URL = nil, &u
		if caBundle != nil {
			cc.CABundle = caBundle
		}
		return nil
	}
	update := func(obj client.Object, configs func() []*admissionregv1.WebhookClientConfig) error {
		return retry.RetryOnConflict(retry.DefaultRetry, func() error {
			if err := c.Get(ctx, client.ObjectKey{Name: name}, obj); err != nil {
				return err
			}
			for _, cc := range configs() {
				if err := point(cc); err != nil {
					return fmt.Errorf("%T %s: %w", obj, name, err)
				}
			}
			return c.Update(ctx, obj)
		})
	}
	m := &admissionregv1.MutatingWebhookConfiguration{}
	err := update(m, func() (out []*admissionregv1.WebhookClientConfig) {
		for i := range m.Webhooks {
			out = append(out, &m.Webhooks[i].ClientConfig)
		}
		return out
	})
	if err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	v := &admissionregv1.ValidatingWebhookConfiguration{}
	err = update(v, func() (out []*admissionregv1.WebhookClientConfig) {
		for i := range v.Webhooks {
			out = append(out, &v.Webhooks[i].ClientConfig)
		}
		return out
	})
	if err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	return nil
}

// probeNamespace is opted in; dry-run requests in it show whether the API
// server calls a given netguard server.
const probeNamespace = "netguard-probe"

// WaitCalled waits until the API server calls s through netguard's webhook
// configuration of kind: an API server picks up a changed configuration
// moments after the write, not at once. It sends dry-run requests the
// webhook intercepts until s counts one more request on its path.
func (cp *ControlPlane) WaitCalled(ctx context.Context, s *Server, kind string) error {
	if _, err := cp.CreateNamespace(ctx, probeNamespace, map[string]string{"netguard.io/inject": "enabled"}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	path, trigger := webhook.MutatePodPath, func(name string) client.Object {
		return &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: probeNamespace, Name: name},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "probe", Image: "registry.example/probe:1"}}},
		}
	}
	if kind == KindValidating {
		path, trigger = services.ServicePath, func(name string) client.Object {
			return &corev1.Service{
				ObjectMeta: metav1.ObjectMeta{Namespace: probeNamespace, Name: name},
				Spec:       corev1.ServiceSpec{Selector: map[string]string{"app": "probe"}, Ports: []corev1.ServicePort{{Port: 80}}},
			}
		}
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		before, err := s.webhookRequests(path)
		if err != nil {
			return err
		}
		// Denied or not, only the call counts.
		_ = cp.Client.Create(ctx, trigger("probe-"+utilrand.String(6)), client.DryRunAll)
		after, err := s.webhookRequests(path)
		if err != nil {
			return err
		}
		if after > before {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("the API server did not call netguard at %s within 60s", s.WebhookURL(path))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// webhookRequests is the number of admission requests s served on path,
// from controller-runtime's controller_runtime_webhook_requests_total.
func (s *Server) webhookRequests(path string) (float64, error) {
	return s.Metric("controller_runtime_webhook_requests_total", `webhook="`+path+`"`)
}

// Metric sums the samples of the metric name that s serves whose labels
// contain every one of labels (each `key="value"`); a metric without
// samples is 0.
func (s *Server) Metric(name string, labels ...string) (float64, error) {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + s.MetricsAddr + "/metrics")
	if err != nil {
		return 0, fmt.Errorf("reading netguard's metrics: %w", err)
	}
	defer resp.Body.Close()
	var total float64
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
lines:
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		for _, l := range labels {
			if !strings.Contains(line, l) {
				continue lines
			}
		}
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err != nil {
			return 0, fmt.Errorf("metric line %q: %w", line, err)
		}
		total += v
	}
	return total, sc.Err()
}

// Leads reports whether s has been elected to record Events.
func (s *Server) Leads() bool {
	v, err := s.Metric("leader_election_master_status")
	return err == nil && v == 1
}

// WaitLeader waits until s leads. A replica takes over at most one lease
// duration after the last leader stopped renewing (LaunchServer gives
// netguard short leases).
func (s *Server) WaitLeader(ctx context.Context) error {
	deadline := time.Now().Add(30 * time.Second)
	for !s.Leads() {
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("netguard serve at %s is not the leader after 30s", s.MetricsAddr)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return nil
}
