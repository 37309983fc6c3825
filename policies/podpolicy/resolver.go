package podpolicy

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/netguard-io/netguard/config"
)

// The pod's resolver decides which DNS rules are safe for it:
//
//	resolver   single-request-reopen     ndots                       A/AAAA race fixed by
//	---------------------------------------------------------------------------------------------
//	glibc      added                     lowered to dns.ndots        single-request-reopen
//	go         not added (it only        lowered to dns.ndots        Go itself: a new socket
//	           serialises A and AAAA)                                per query
//	musl       not added (ignored)       kept at 5                   the resolv-mode sidecar
//	unknown    added (glibc needs it,    kept at 5                   single-request-reopen if
//	           musl ignores it)                                      glibc, else the sidecar
//
// ndots is kept at 5 where the resolver may be musl because musl never
// walks the search list for a name with ndots dots or more: with ndots:2,
// svc.ns.svc and pod.svc.ns.svc become NXDOMAIN. glibc and Go try the search
// list after the absolute name fails, so they keep every name. A ndots
// annotation on the pod or its namespace is the operator's choice and
// applies to every resolver, with a warning where it loses names. Search
// scrubbing is safe for all: it drops only the node's search domains.

// ImageResolver returns the resolver an image's programs use, as far as
// its reference tells: musl for Alpine images (repository alpine, a tag
// that names alpine or musl) and rc.MuslImages, glibc for rc.GlibcImages,
// else unknown.
func ImageResolver(image string, rc config.ResolverConfig) config.Resolver {
	path := ImageRepositoryPath(image)
	_, tag := splitTag(image)
	tag = strings.ToLower(tag)
	switch {
	case path == "":
		return config.ResolverUnknown
	case path == "alpine" || strings.HasSuffix(path, "/alpine"),
		strings.Contains(tag, "alpine"), strings.Contains(tag, "musl"),
		MatchesImage(image, rc.MuslImages):
		return config.ResolverMusl
	case MatchesImage(image, rc.GlibcImages):
		return config.ResolverGlibc
	}
	return config.ResolverUnknown
}

// podResolver decides which resolver the pod's DNS rules are chosen for.
func (m *mutator) podResolver() (config.Resolver, string) {
	r, from, problem := PodResolver(m.pod, m.ns, m.cfg)
	if problem != "" {
		m.warn(problem)
	}
	return r, from
}

// PodResolver returns the resolver a pod's DNS rules are chosen for, and
// says from what: the netguard.io/resolver annotation of the pod or its
// namespace, else the images of its containers (one musl image makes the
// pod musl, as they share one resolv.conf; all must be glibc for glibc),
// else dns.resolver.default. problem describes a bad annotation, which is
// passed over.
func PodResolver(pod *corev1.Pod, ns NamespaceInfo, cfg *config.Config) (r config.Resolver, from, problem string) {
	if v, src, ok := annotation(pod, ns, AnnotationResolver); ok {
		if r := config.Resolver(v); r.Valid() {
			return r, src, ""
		}
		problem = fmt.Sprintf("%s=%q is not one of glibc, musl, go, unknown; ignored", src, v)
	}
	var glibc, unknown []string
	for _, list := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for _, c := range list {
			if c.Name == DNSProxyContainerName {
				continue
			}
			switch ImageResolver(c.Image, cfg.DNS.Resolver) {
			case config.ResolverMusl:
				return config.ResolverMusl, "image " + c.Image, problem
			case config.ResolverGlibc:
				glibc = append(glibc, c.Image)
			default:
				unknown = append(unknown, c.Image)
			}
		}
	}
	switch {
	case len(unknown) == 0 && len(glibc) > 0:
		return config.ResolverGlibc, imagesText(glibc), problem
	case cfg.DNS.Resolver.Default != config.ResolverUnknown:
		return cfg.DNS.Resolver.Default, "dns.resolver.default (" + imagesText(unknown) + " unclassified)", problem
	}
	return config.ResolverUnknown, imagesText(unknown) + " unclassified", problem
}

// NdotsLosesNames checks a pod netguard already admitted: it returns why
// the ndots netguard gave it loses names under the pod's resolver, or "".
// Versions before netguard told resolvers apart lowered ndots for every
// pod, so musl pods they admitted no longer resolve svc.ns.svc names; pods
// created now keep ndots:5. A ndots annotation on the pod or its namespace
// is the operator's choice and is not reported. cfg nil means the defaults.
func NdotsLosesNames(pod *corev1.Pod, ns NamespaceInfo, cfg *config.Config) string {
	if cfg == nil {
		cfg = config.Default()
	}
	st, ok := podStatus(pod)
	if !ok || !slices.Contains(st.Applied, AppliedNdots) || pod.Spec.DNSConfig == nil {
		return ""
	}
	if _, _, annotated := annotation(pod, ns, AnnotationNdots); annotated {
		return ""
	}
	i := optionIndex(pod.Spec.DNSConfig.Options, "ndots")
	if i < 0 {
		return ""
	}
	n, err := strconv.Atoi(optionValue(pod.Spec.DNSConfig.Options[i]))
	if kubelet, _ := strconv.Atoi(kubeletNdots); err != nil || n >= kubelet {
		return ""
	}
	r, from, _ := PodResolver(pod, ns, cfg)
	if r.SearchesAfterAbsolute() {
		return ""
	}
	version := st.Version
	if version == "" {
		version = "an earlier version"
	}
	return fmt.Sprintf("netguard %s set ndots:%d, under which musl no longer resolves names with %d or more dots such as svc.ns.svc, "+
		"and this pod's resolver is %s (%s): pods created by this netguard keep ndots:5, roll the workload out again", version, n, n, r, from)
}

func imagesText(images []string) string {
	images = omitDuplicates(images)
	switch len(images) {
	case 0:
		return "no container image"
	case 1:
		return "image " + images[0]
	}
	return "images " + strings.Join(images, ", ")
}

// ignoresOption reports whether resolver r gains nothing from resolv.conf
// option name: musl ignores single-request and single-request-reopen, and
// Go, which sends every query from a new socket, only serialises A and
// AAAA with them.
func ignoresOption(r config.Resolver, name string) bool {
	if name != "single-request-reopen" && name != "single-request" {
		return false
	}
	return r == config.ResolverMusl || r == config.ResolverGo
}
