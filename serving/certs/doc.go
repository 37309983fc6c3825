// Package certs gives netguard's webhook server a serving certificate
// without cert-manager installed: netguard keeps a CA of its own in a Secret
// of its namespace, signs and renews its serving certificate with it, and
// writes the CA into the caBundle of its own webhook configurations, again
// whenever the CA rotates or someone resets the field.
//
// The CA and the serving certificate are cert-manager's code
// (pkg/server/tls: DynamicAuthority and DynamicSource, which run
// cert-manager's own webhook the same way): the CA is renewed at two thirds
// of its life and whenever its Secret is deleted or damaged, the serving
// certificate at two thirds of its life and whenever the CA changes. Every
// replica runs all of it; they share the CA through the Secret.
//
// Layer: process plumbing, below the features. It may import serving,
// clusterview, policies, config and internal.
package certs
