package webhook

import (
	"errors"
	"strconv"
	"strings"

	jsonpatch "gomodules.xyz/jsonpatch/v2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
)

// errUnexpectedChange means the pod policies changed the pod in a way
// podPatch does not know; the caller falls back to a full diff.
var errUnexpectedChange = errors.New("pod changed outside the fields netguard patches")

// podPatch returns JSON patch operations that turn orig into mutated,
// covering exactly the fields the pod policies change: the status
// annotation, the sidecar's label, dnsPolicy, dnsConfig, a sidecar prepended to the init
// containers or appended to the containers, and pod sysctls.
//
// Note: jsonpatch.CreatePatch marshals both pods and diffs them whole, so
// its cost grows with the pod (env vars, containers) while the change does
// not. The operations here touch only what changed, and insert the sidecar
// at an index rather than rewriting container lists, so fields of the
// object that netguard's Go types do not know survive. The equivalence with
// CreatePatch is checked in tests and by FuzzPodAdmission.
func podPatch(orig, mutated *corev1.Pod) ([]jsonpatch.Operation, error) {
	var ops []jsonpatch.Operation
	add := func(path string, v any) { ops = append(ops, jsonpatch.NewOperation("add", path, v)) }

	if err := metadataOps(orig.Labels, mutated.Labels, "/metadata/labels", add); err != nil {
		return nil, err
	}
	if err := metadataOps(orig.Annotations, mutated.Annotations, "/metadata/annotations", add); err != nil {
		return nil, err
	}
	if orig.Spec.DNSPolicy != mutated.Spec.DNSPolicy {
		add("/spec/dnsPolicy", mutated.Spec.DNSPolicy)
	}
	if !equality.Semantic.DeepEqual(orig.Spec.DNSConfig, mutated.Spec.DNSConfig) {
		if mutated.Spec.DNSConfig == nil {
			return nil, errUnexpectedChange
		}
		add("/spec/dnsConfig", mutated.Spec.DNSConfig)
	}
	if err := containerOps(orig.Spec.InitContainers, mutated.Spec.InitContainers, "/spec/initContainers", true, add); err != nil {
		return nil, err
	}
	if err := containerOps(orig.Spec.Containers, mutated.Spec.Containers, "/spec/containers", false, add); err != nil {
		return nil, err
	}
	if err := sysctlOps(orig.Spec.SecurityContext, mutated.Spec.SecurityContext, add); err != nil {
		return nil, err
	}
	return ops, nil
}

// metadataOps handles labels or annotations (path /metadata/labels or
// /metadata/annotations) added or changed; none may be removed.
func metadataOps(orig, mutated map[string]string, path string, add func(string, any)) error {
	for k := range orig {
		if _, ok := mutated[k]; !ok {
			return errUnexpectedChange
		}
	}
	var added map[string]string
	for k, v := range mutated {
		if old, ok := orig[k]; !ok || old != v {
			if added == nil {
				added = map[string]string{}
			}
			added[k] = v
		}
	}
	if orig == nil && added != nil {
		add(path, added)
		return nil
	}
	for k, v := range added {
		add(path+"/"+escape(k), v)
	}
	return nil
}

// containerOps handles one injected container: first in the list when
// prepend, last otherwise. Containers are compared by name only: the
// policies never change an existing container.
func containerOps(orig, mutated []corev1.Container, path string, prepend bool, add func(string, any)) error {
	switch {
	case len(mutated) == len(orig):
		for i := range orig {
			if orig[i].Name != mutated[i].Name {
				return errUnexpectedChange
			}
		}
		return nil
	case len(mutated) != len(orig)+1:
		return errUnexpectedChange
	case len(orig) == 0:
		add(path, mutated)
		return nil
	case prepend:
		for i := range orig {
			if orig[i].Name != mutated[i+1].Name {
				return errUnexpectedChange
			}
		}
		add(path+"/0", mutated[0])
		return nil
	default:
		for i := range orig {
			if orig[i].Name != mutated[i].Name {
				return errUnexpectedChange
			}
		}
		add(path+"/-", mutated[len(orig)])
		return nil
	}
}

// sysctlOps handles sysctls added to, or changed in, the pod security
// context; every other security context field must be unchanged.
func sysctlOps(orig, mutated *corev1.PodSecurityContext, add func(string, any)) error {
	if equality.Semantic.DeepEqual(orig, mutated) {
		return nil
	}
	if mutated == nil {
		return errUnexpectedChange
	}
	if orig == nil {
		add("/spec/securityContext", mutated)
		return nil
	}
	rest, mrest := *orig, *mutated
	rest.Sysctls, mrest.Sysctls = nil, nil
	if !equality.Semantic.DeepEqual(rest, mrest) {
		return errUnexpectedChange
	}
	switch {
	case len(orig.Sysctls) == 0:
		add("/spec/securityContext/sysctls", mutated.Sysctls)
	case len(mutated.Sysctls) == len(orig.Sysctls)+1 && equality.Semantic.DeepEqual(orig.Sysctls, mutated.Sysctls[:len(orig.Sysctls)]):
		add("/spec/securityContext/sysctls/-", mutated.Sysctls[len(orig.Sysctls)])
	case len(mutated.Sysctls) == len(orig.Sysctls):
		for i := range orig.Sysctls {
			if orig.Sysctls[i].Name != mutated.Sysctls[i].Name {
				return errUnexpectedChange
			}
			if orig.Sysctls[i].Value != mutated.Sysctls[i].Value {
				add("/spec/securityContext/sysctls/"+strconv.Itoa(i)+"/value", mutated.Sysctls[i].Value)
			}
		}
	default:
		return errUnexpectedChange
	}
	return nil
}

// escape encodes a map key as a JSON pointer token (RFC 6901).
func escape(key string) string {
	return strings.ReplaceAll(strings.ReplaceAll(key, "~", "~0"), "/", "~1")
}
