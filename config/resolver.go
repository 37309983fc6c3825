package config

import (
	"strings"

	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Resolver names a DNS stub resolver by how it treats a pod's resolv.conf.
// What sets them apart for netguard: glibc and Go look a name with at
// least ndots dots up as an absolute name first and then walk the search
// list; musl (Alpine) and BIND's dig +search never search such a name. musl
// also ignores single-request and single-request-reopen.
type Resolver string

const (
	// ResolverGlibc is glibc's resolver (Debian, Ubuntu, RHEL-family
	// images), and resolvers that search the same way (c-ares, Java's).
	ResolverGlibc Resolver = "glibc"
	// ResolverMusl is musl's resolver (Alpine images), and resolvers that
	// never search a name with ndots dots or more (dig +search).
	ResolverMusl Resolver = "musl"
	// ResolverGo is Go's own resolver (static Go binaries): it searches like
	// glibc and sends each query from a new socket.
	ResolverGo Resolver = "go"
	// ResolverUnknown is a pod netguard cannot classify: it gets only the
	// rules that are safe for every resolver.
	ResolverUnknown Resolver = "unknown"
)

// Resolvers are the valid values of a Resolver, in documentation order.
var Resolvers = []Resolver{ResolverGlibc, ResolverMusl, ResolverGo, ResolverUnknown}

// SearchesAfterAbsolute reports whether r walks the search list for a name
// with ndots dots or more once its absolute lookup fails. Only then can
// ndots be lowered without losing names such as svc.ns.svc.
func (r Resolver) SearchesAfterAbsolute() bool {
	return r == ResolverGlibc || r == ResolverGo
}

// Valid reports whether r is one of Resolvers.
func (r Resolver) Valid() bool {
	for _, v := range Resolvers {
		if r == v {
			return true
		}
	}
	return false
}

// ResolverConfig tells netguard which resolver a pod's programs use: the
// pod's (or its namespace's) netguard.io/resolver annotation, else its
// containers' images, else Default.
type ResolverConfig struct {
	// Default is the resolver assumed for a pod whose images are in neither
	// list: unknown (rules safe for every resolver), glibc, musl or go.
	// Set glibc only when every image of the cluster that netguard cannot
	// classify uses glibc. Defaults to unknown.
	Default Resolver `json:"default"`
	// GlibcImages are image repository patterns (as in dnsProxy.images)
	// of images whose programs use glibc's resolver. An image whose tag
	// names alpine or musl is musl all the same. Defaults to the official
	// Debian-, Ubuntu- and RHEL-based images in DefaultGlibcImages.
	GlibcImages []string `json:"glibcImages"`
	// MuslImages are image repository patterns of images whose programs use
	// musl's resolver, besides the ones netguard always counts as musl: the
	// repository alpine (or */alpine) and any tag that names alpine or musl.
	MuslImages []string `json:"muslImages,omitempty"`
}

// DefaultGlibcImages are the repositories whose images (in every variant
// but the Alpine ones) are built on glibc: distribution bases and the
// official language and server images, whose default variants are Debian
// or Ubuntu.
var DefaultGlibcImages = []string{
	"debian", "ubuntu", "fedora", "rockylinux", "almalinux", "amazonlinux",
	"nginx", "*/nginx", "nginxinc/nginx-unprivileged", "httpd",
	"python", "node", "ruby", "golang", "php", "perl", "openjdk", "eclipse-temurin", "amazoncorretto",
	"postgres", "mysql", "mariadb", "redis", "memcached", "rabbitmq", "mongo",
}

func defaultResolver() ResolverConfig {
	return ResolverConfig{
		Default:     ResolverUnknown,
		GlibcImages: append([]string(nil), DefaultGlibcImages...),
	}
}

func (r *ResolverConfig) validate(p *field.Path) field.ErrorList {
	var errs field.ErrorList
	if !r.Default.Valid() {
		errs = append(errs, field.NotSupported(p.Child("default"), r.Default, Resolvers))
	}
	errs = append(errs, validateImagePatterns(p.Child("glibcImages"), r.GlibcImages)...)
	return append(errs, validateImagePatterns(p.Child("muslImages"), r.MuslImages)...)
}

// validateImagePatterns checks image repository patterns: a path without
// tag or digest, optionally starting with "*/".
func validateImagePatterns(p *field.Path, patterns []string) field.ErrorList {
	var errs field.ErrorList
	for i, img := range patterns {
		if img == "" || strings.ContainsAny(img, " :@") {
			errs = append(errs, field.Invalid(p.Index(i), img, "must be an image repository path without tag or digest, optionally starting with */"))
		}
	}
	return errs
}
