package certs

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"time"
)

// MergeBundle returns the caBundle a webhook should carry, given the one it
// carries now (existing, PEM) and netguard's current CA certificate (ca,
// PEM).
//
// The result holds the newest netguard CA and, for grace after that CA was
// created, one more: the CA this replica signs with (ca) when it is not the
// newest, else the one before the newest. When the CA rotates, a replica
// that still serves a certificate from the previous CA is trusted until it
// has picked up the new one, and the CA in ca is always trusted while it
// is within grace of the newest. "Newest" goes by NotBefore, which has
// one-second precision: two CAs made in the same second are ordered by
// their bytes, and ca is kept whichever of them comes first. Certificates
// in existing that are not CAs, are expired, or have a different subject
// than ca are dropped: netguard owns the caBundle of its own webhooks.
//
// The result depends only on the certificates and now, and
// MergeBundle(MergeBundle(x)) == MergeBundle(x), so replicas that write the
// same configuration agree instead of overwriting each other, even while one
// of them has not yet seen the newest CA.
func MergeBundle(existing, ca []byte, now time.Time, grace time.Duration) ([]byte, error) {
	current, err := parseCertificates(ca)
	if err != nil {
		return nil, fmt.Errorf("CA certificate: %w", err)
	}
	if len(current) == 0 {
		return nil, errors.New("CA certificate: no PEM certificate found")
	}
	ours := current[0]
	// An unparsable bundle is replaced, not an error: it is what the API
	// server cannot use either.
	previous, _ := parseCertificates(existing)

	candidates := []*x509.Certificate{ours}
	for _, c := range previous {
		if !c.IsCA || !now.Before(c.NotAfter) || !bytes.Equal(c.RawSubject, ours.RawSubject) {
			continue
		}
		if slices.ContainsFunc(candidates, func(k *x509.Certificate) bool { return k.Equal(c) }) {
			continue
		}
		candidates = append(candidates, c)
	}
	// Newest first; ties (same second) broken by the raw bytes so that the
	// order never depends on the input order.
	slices.SortFunc(candidates, func(a, b *x509.Certificate) int {
		if c := b.NotBefore.Compare(a.NotBefore); c != 0 {
			return c
		}
		return bytes.Compare(a.Raw, b.Raw)
	})
	keep := candidates[:1]
	if len(candidates) > 1 && now.Before(candidates[0].NotBefore.Add(grace)) {
		second := candidates[1]
		if !candidates[0].Equal(ours) {
			second = ours
		}
		keep = append(keep, second)
	}
	var out bytes.Buffer
	for _, c := range keep {
		if err := pem.Encode(&out, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}); err != nil {
			return nil, err
		}
	}
	return out.Bytes(), nil
}

// BundleRenewAt is when MergeBundle's result for bundle stops including the
// previous CA, or the zero time when it holds only one.
func BundleRenewAt(bundle []byte, grace time.Duration) time.Time {
	certs, err := parseCertificates(bundle)
	if err != nil || len(certs) < 2 {
		return time.Time{}
	}
	return certs[0].NotBefore.Add(grace)
}

// parseCertificates parses every CERTIFICATE block of PEM data, skipping
// other blocks. It fails on the first certificate that does not parse.
func parseCertificates(data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return certs, nil
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return certs, err
		}
		certs = append(certs, c)
	}
}
