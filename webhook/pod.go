package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
	sigsjson "sigs.k8s.io/json"

	"github.com/netguard-io/netguard/clusterview"
	"github.com/netguard-io/netguard/config"
	"github.com/netguard-io/netguard/policies/podpolicy"
)

// MutatePodPath is where the API server sends Pod CREATE requests.
const MutatePodPath = "/mutate-v1-pod"

// PodMutator applies the pod policies to pods being created.
//
// It is a raw admission.Handler rather than an admission.Defaulter because
// it needs the request's namespace (pods often have none yet) and emits the
// patch against the exact bytes the API server sent.
//
// Pods fail open: whatever goes wrong, the pod is admitted unchanged (with
// a warning), because a DNS tweak is never worth blocking a workload. Only
// a request that cannot be decoded is answered with an error, and the
// webhook's failurePolicy (Ignore) decides what the API server does then.
type PodMutator struct {
	Config     *config.Config
	Reader     client.Reader // namespaces, through the manager's cache
	ClusterDNS *clusterview.ClusterDNS
	Version    string
	// LiveReader, when set, reads a namespace the cache does not have yet:
	// one created moments ago, or any created while the cache catches up
	// after losing the API server.
	LiveReader client.Reader
}

var _ admission.Handler = (*PodMutator)(nil)

// NewPodMutator returns a PodMutator.
func NewPodMutator(cfg *config.Config, reader client.Reader, dns *clusterview.ClusterDNS, version string) *PodMutator {
	return &PodMutator{Config: cfg, Reader: reader, ClusterDNS: dns, Version: version}
}

// Handle implements admission.Handler.
func (m *PodMutator) Handle(ctx context.Context, req admission.Request) admission.Response {
	log := logf.FromContext(ctx).WithValues("namespace", req.Namespace, "uid", req.UID)
	if req.Kind.Kind != "Pod" || req.Kind.Group != "" {
		webhookErrors.WithLabelValues("pod", "wrong-kind").Inc()
		return admission.Errored(http.StatusBadRequest, fmt.Errorf("netguard pod webhook got a %s request; it handles only v1 Pod", req.Kind.String()))
	}
	if req.Operation != admissionv1.Create {
		// DNS settings and containers cannot change after creation.
		return admission.Allowed("netguard mutates pods only at creation")
	}
	if len(req.Object.Raw) == 0 {
		webhookErrors.WithLabelValues("pod", "decode").Inc()
		return admission.Errored(http.StatusBadRequest, fmt.Errorf("admission request %s has no object", req.UID))
	}
	pod, hasParents, err := decodePod(req.Object.Raw)
	if err != nil {
		webhookErrors.WithLabelValues("pod", "decode").Inc()
		return admission.Errored(http.StatusBadRequest, fmt.Errorf("decoding pod of admission request %s: %w", req.UID, err))
	}
	if pod.Namespace == "" {
		pod.Namespace = req.Namespace
	}
	name := pod.Name
	if name == "" {
		name = pod.GenerateName + "*"
	}
	log = log.WithValues("pod", name)

	ns, err := m.namespace(ctx, req.Namespace)
	if err != nil {
		webhookErrors.WithLabelValues("pod", "namespace-lookup").Inc()
		log.Error(err, "Admitting pod unchanged: namespace lookup failed")
		return admitWithWarning(fmt.Sprintf("netguard: pod admitted unchanged: %v", err))
	}
	if ok, reason := podpolicy.NamespaceSelected(ns, m.Config); !ok {
		podSkips.WithLabelValues(reason.Label()).Inc()
		log.V(1).Info("Pod skipped", "reason", string(reason))
		return admission.Allowed(string(reason))
	}

	env := podpolicy.Env{Namespace: ns, Version: m.Version}
	var warnings []string
	if ip, err := m.ClusterDNS.IP(ctx); err == nil {
		env.ClusterDNS = ip
	} else if m.Config.DNS.Search.Scrub {
		log.V(1).Info("Cluster DNS IP unknown", "err", err.Error())
	}

	result := podpolicy.Mutate(pod, env, m.Config)
	warnings = append(warnings, result.Warnings...)
	if result.DNSProxySkipped != "" {
		dnsProxySkips.WithLabelValues(result.DNSProxySkipped.Label()).Inc()
	}
	if result.Skipped != "" {
		podSkips.WithLabelValues(result.Skipped.Label()).Inc()
		log.V(1).Info("Pod skipped", "reason", string(result.Skipped))
		resp := admission.Allowed(string(result.Skipped))
		resp.Warnings = warnings
		return resp
	}
	if len(result.Applied) == 0 {
		resp := admission.Allowed("nothing to change")
		resp.Warnings = warnings
		return resp
	}
	resp, err := patchResponse(req.Object.Raw, hasParents, pod, result.Pod)
	if err != nil {
		// Fail open: admit the pod unchanged rather than risk a wrong patch.
		webhookErrors.WithLabelValues("pod", "patch").Inc()
		log.Error(err, "Admitting pod unchanged: computing the patch failed")
		return admitWithWarning(fmt.Sprintf("netguard: pod admitted unchanged: %v", err))
	}
	for _, p := range result.Applied {
		podMutations.WithLabelValues(p).Inc()
	}
	podResolvers.WithLabelValues(string(result.Resolver)).Inc()
	resp.Warnings = warnings
	log.Info("Pod mutated", "applied", result.Applied, "resolver", result.Resolver, "resolverFrom", result.ResolverFrom, "dryRun", req.DryRun != nil && *req.DryRun)
	return resp
}

func (m *PodMutator) namespace(ctx context.Context, name string) (podpolicy.NamespaceInfo, error) {
	var ns corev1.Namespace
	key := types.NamespacedName{Name: name}
	err := m.Reader.Get(ctx, key, &ns)
	if apierrors.IsNotFound(err) && m.LiveReader != nil {
		err = m.LiveReader.Get(ctx, key, &ns)
	}
	if err != nil {
		return podpolicy.NamespaceInfo{}, fmt.Errorf("reading namespace %q: %w", name, err)
	}
	return podpolicy.NamespaceInfo{Name: ns.Name, Labels: ns.Labels, Annotations: ns.Annotations}, nil
}

func admitWithWarning(msg string) admission.Response {
	resp := admission.Allowed("")
	resp.Warnings = []string{msg}
	return resp
}

// patchResponse answers with the targeted patch from podPatch, or with a
// full diff of the raw object when the change has a shape podPatch does
// not cover. The targeted operations add below /metadata and /spec, which
// every pod the API server sends has (hasParents); anything else gets the
// full diff.
func patchResponse(raw []byte, hasParents bool, orig, mutated *corev1.Pod) (admission.Response, error) {
	if hasParents {
		if ops, err := podPatch(orig, mutated); err == nil {
			return admission.Patched("", ops...), nil
		}
	}
	js, err := json.Marshal(mutated)
	if err != nil {
		return admission.Response{}, fmt.Errorf("encoding the mutated pod: %w", err)
	}
	resp := admission.PatchResponseFromRaw(raw, js)
	if !resp.Allowed {
		return admission.Response{}, fmt.Errorf("diffing the mutated pod: %s", resp.Result.Message)
	}
	return resp, nil
}

// podJSON is a Pod whose top-level fields are pointers, so that decoding
// also tells whether the object has them.
type podJSON struct {
	metav1.TypeMeta `json:",inline"`
	Metadata        *metav1.ObjectMeta `json:"metadata"`
	Spec            *corev1.PodSpec    `json:"spec"`
	Status          *corev1.PodStatus  `json:"status"`
}

// decodePod decodes the pod in one pass, case-sensitively and ignoring
// unknown fields, as the API server's JSON serializer does. hasParents
// reports whether the object has /metadata and /spec objects. Only JSON is
// accepted: the API server sends nothing else.
func decodePod(raw []byte) (pod *corev1.Pod, hasParents bool, err error) {
	if t := bytes.TrimLeft(raw, " \t\r\n"); len(t) == 0 || t[0] != '{' {
		return nil, false, errors.New("object is not a JSON object")
	}
	var p podJSON
	if err := sigsjson.UnmarshalCaseSensitivePreserveInts(raw, &p); err != nil {
		return nil, false, err
	}
	pod = &corev1.Pod{TypeMeta: p.TypeMeta}
	if p.Metadata != nil {
		pod.ObjectMeta = *p.Metadata
	}
	if p.Spec != nil {
		pod.Spec = *p.Spec
	}
	if p.Status != nil {
		pod.Status = *p.Status
	}
	return pod, p.Metadata != nil && p.Spec != nil, nil
}
