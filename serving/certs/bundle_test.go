package certs

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/client-go/rest"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// cert makes a self-signed certificate valid from notBefore for a year.
func cert(t *testing.T, cn string, notBefore time.Time, isCA bool) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             notBefore,
		NotAfter:              notBefore.Add(365 * 24 * time.Hour),
		IsCA:                  isCA,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func concat(pems ...[]byte) []byte { return bytes.Join(pems, nil) }

func TestMergeBundle(t *testing.T) {
	grace := 10 * time.Minute
	oldest := cert(t, CACommonName, t0.Add(-48*time.Hour), true)
	old := cert(t, CACommonName, t0.Add(-24*time.Hour), true)
	current := cert(t, CACommonName, t0, true)
	expired := cert(t, CACommonName, t0.Add(-400*24*time.Hour), true)
	foreign := cert(t, "someone-elses-ca", t0.Add(-time.Hour), true)
	leaf := cert(t, CACommonName, t0.Add(-time.Hour), false)
	newer := cert(t, CACommonName, t0.Add(time.Minute), true)
	newest := cert(t, CACommonName, t0.Add(2*time.Minute), true)

	cases := map[string]struct {
		existing, ca []byte
		now          time.Time
		want         []byte
		wantErr      string
	}{
		"empty bundle gets the CA":              {existing: nil, ca: current, now: t0, want: current},
		"bundle already right":                  {existing: current, ca: current, now: t0, want: current},
		"rotation keeps the previous CA":        {existing: old, ca: current, now: t0.Add(time.Minute), want: concat(current, old)},
		"previous CA leaves after the grace":    {existing: concat(current, old), ca: current, now: t0.Add(grace), want: current},
		"stale replica keeps the newer CA":      {existing: concat(current, old), ca: old, now: t0.Add(time.Minute), want: concat(current, old)},
		"stale replica writing first":           {existing: current, ca: old, now: t0.Add(time.Minute), want: concat(current, old)},
		"two rotations keep only one previous":  {existing: concat(old, oldest), ca: current, now: t0, want: concat(current, old)},
		"order of the input does not matter":    {existing: concat(oldest, old), ca: current, now: t0, want: concat(current, old)},
		"someone else's CA is dropped":          {existing: concat(foreign, current), ca: current, now: t0, want: current},
		"an expired CA is dropped":              {existing: expired, ca: current, now: t0, want: current},
		"a leaf is dropped":                     {existing: leaf, ca: current, now: t0, want: current},
		"garbage is replaced":                   {existing: []byte("not PEM at all"), ca: current, now: t0, want: current},
		"a broken certificate block is dropped": {existing: []byte("-----BEGIN CERTIFICATE-----\nMA==\n-----END CERTIFICATE-----\n"), ca: current, now: t0, want: current},
		"our CA stays behind two newer ones":    {existing: concat(newer, newest), ca: current, now: t0.Add(3 * time.Minute), want: concat(newest, current)},
		"no CA is an error":                     {existing: current, ca: nil, now: t0, wantErr: "no PEM certificate"},
		"a broken CA is an error":               {existing: current, ca: []byte("-----BEGIN CERTIFICATE-----\nMA==\n-----END CERTIFICATE-----\n"), now: t0, wantErr: "CA certificate"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			got, err := MergeBundle(tc.existing, tc.ca, tc.now, grace)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, tc.want) {
				t.Fatalf("bundle =\n%s\nwant\n%s", describe(t, got), describe(t, tc.want))
			}
			// Writing the result again changes nothing: replicas settle.
			again, err := MergeBundle(got, tc.ca, tc.now, grace)
			if err != nil || !bytes.Equal(again, got) {
				t.Fatalf("second pass changed the bundle (err %v):\n%s", err, describe(t, again))
			}
		})
	}
}

// TestMergeBundleKeepsOurCAOnTies: CAs made within the same second
// (NotBefore has one-second precision) sort by their bytes; whatever the
// order, the bundle keeps the CA netguard signs its serving certificate
// with, or the API server would reject it.
func TestMergeBundleKeepsOurCAOnTies(t *testing.T) {
	for i := range 50 {
		a := cert(t, CACommonName, t0, true)
		b := cert(t, CACommonName, t0, true)
		ours := cert(t, CACommonName, t0, true)
		got, err := MergeBundle(concat(a, b), ours, t0, DefaultGrace)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.ContainsFunc(mustParse(t, got), func(c *x509.Certificate) bool { return c.Equal(mustParse(t, ours)[0]) }) {
			t.Fatalf("try %d: the bundle dropped the CA in use:\n%s", i, describe(t, got))
		}
		again, err := MergeBundle(got, ours, t0, DefaultGrace)
		if err != nil || !bytes.Equal(again, got) {
			t.Fatalf("try %d: second pass changed the bundle (err %v)", i, err)
		}
	}
}

func mustParse(t *testing.T, bundle []byte) []*x509.Certificate {
	t.Helper()
	certs, err := parseCertificates(bundle)
	if err != nil {
		t.Fatal(err)
	}
	return certs
}

// TestMergeBundleReplicasAgree: two replicas, one that has seen the new CA
// and one that has not, never undo each other's write.
func TestMergeBundleReplicasAgree(t *testing.T) {
	old := cert(t, CACommonName, t0.Add(-24*time.Hour), true)
	current := cert(t, CACommonName, t0, true)
	bundle := old
	for i := range 6 {
		ca := current
		if i%2 == 1 {
			ca = old // the replica that lags
		}
		next, err := MergeBundle(bundle, ca, t0.Add(time.Minute), DefaultGrace)
		if err != nil {
			t.Fatal(err)
		}
		if i > 0 && !bytes.Equal(next, bundle) {
			t.Fatalf("write %d changed the bundle again:\n%s", i, describe(t, next))
		}
		bundle = next
	}
}

func TestBundleRenewAt(t *testing.T) {
	old := cert(t, CACommonName, t0.Add(-24*time.Hour), true)
	current := cert(t, CACommonName, t0, true)
	if at := BundleRenewAt(current, time.Minute); !at.IsZero() {
		t.Errorf("one CA: renew at %v, want never", at)
	}
	if at := BundleRenewAt(concat(current, old), time.Minute); !at.Equal(t0.Add(time.Minute)) {
		t.Errorf("two CAs: renew at %v, want %v", at, t0.Add(time.Minute))
	}
}

func describe(t *testing.T, bundle []byte) string {
	t.Helper()
	certs, err := parseCertificates(bundle)
	if err != nil {
		return "unparsable: " + err.Error()
	}
	var lines []string
	for _, c := range certs {
		lines = append(lines, c.Subject.CommonName+" from "+c.NotBefore.Format(time.RFC3339))
	}
	return strings.Join(lines, "\n")
}

func TestServiceDNSNames(t *testing.T) {
	got := ServiceDNSNames("netguard", "platform", "cluster.local")
	want := []string{"netguard", "netguard.platform", "netguard.platform.svc", "netguard.platform.svc.cluster.local"}
	if !slices.Equal(got, want) {
		t.Errorf("ServiceDNSNames = %v, want %v", got, want)
	}
}

func TestNewRejectsIncompleteOptions(t *testing.T) {
	ok := Options{Namespace: "netguard", SecretName: "netguard-ca", DNSNames: []string{"netguard.netguard.svc"}}
	cases := map[string]struct {
		mutate func(*Options)
		want   string
	}{
		"complete":                   {func(*Options) {}, ""},
		"no namespace":               {func(o *Options) { o.Namespace = "" }, "namespace"},
		"no secret":                  {func(o *Options) { o.SecretName = "" }, "name of the CA Secret"},
		"no DNS names":               {func(o *Options) { o.DNSNames = nil }, "DNS names"},
		"leaf outlives the CA":       {func(o *Options) { o.LeafDuration, o.CADuration = 48*time.Hour, 24*time.Hour }, "shorter than the CA"},
		"leaf outlives default CA":   {func(o *Options) { o.LeafDuration = 2 * DefaultCADuration }, "shorter than the CA"},
		"defaults fill durations in": {func(o *Options) { o.LeafDuration, o.CADuration = 0, 0 }, ""},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			o := ok
			tc.mutate(&o)
			_, err := New(&rest.Config{Host: "https://127.0.0.1:1"}, o, logr.Discard())
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("New: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("New error = %v, want one containing %q", err, tc.want)
			}
		})
	}
}
