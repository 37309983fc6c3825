package clusterview

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/netguard-io/netguard/config"
)

// clusterDNSRefresh is how long a discovered cluster DNS IP is reused before
// the Service is read again. The IP of kube-dns practically never changes.
const clusterDNSRefresh = time.Minute

// ClusterDNS finds the cluster DNS Service IP: from the settings when set,
// else from the ClusterIP of the configured Service (kube-system/kube-dns).
// It never reads kubelet /configz or kubeadm-config, which managed clusters
// do not expose.
type ClusterDNS struct {
	configured string
	service    types.NamespacedName
	reader     client.Reader
	now        func() time.Time

	mu      sync.Mutex
	ip      string
	checked time.Time
	lastErr error
}

// NewClusterDNS returns a ClusterDNS that reads the Service through reader
// at most once per minute.
func NewClusterDNS(cfg *config.Config, reader client.Reader) *ClusterDNS {
	ns, name, _ := strings.Cut(cfg.DNS.Search.ClusterDNSService, "/")
	return &ClusterDNS{
		configured: cfg.DNS.Search.ClusterDNS,
		service:    types.NamespacedName{Namespace: ns, Name: name},
		reader:     reader,
		now:        time.Now,
	}
}

// IP returns the cluster DNS IP, or an error that says why it is unknown.
// After a failed read the last known IP is still returned.
func (c *ClusterDNS) IP(ctx context.Context) (string, error) {
	if c.configured != "" {
		clusterDNSKnown.Set(1)
		return c.configured, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.checked.IsZero() || c.now().Sub(c.checked) >= clusterDNSRefresh {
		ip, err := c.discover(ctx)
		c.checked, c.lastErr = c.now(), err
		if err == nil {
			c.ip = ip
		} else {
			// Once per refresh period at most: search domains stay
			// unscrubbed until this is fixed (RBAC, settings).
			logf.FromContext(ctx).Error(err, "Cannot learn the cluster DNS IP")
		}
	}
	if c.ip == "" {
		clusterDNSKnown.Set(0)
		return "", c.lastErr
	}
	clusterDNSKnown.Set(1)
	return c.ip, nil
}

func (c *ClusterDNS) discover(ctx context.Context) (string, error) {
	var svc corev1.Service
	if err := c.reader.Get(ctx, c.service, &svc); err != nil {
		return "", fmt.Errorf("cluster DNS IP not configured (dns.search.clusterDNS) and Service %s not readable: %w", c.service, err)
	}
	if _, err := netip.ParseAddr(svc.Spec.ClusterIP); err != nil {
		return "", fmt.Errorf("cluster DNS IP not configured (dns.search.clusterDNS) and Service %s has no cluster IP (%q)", c.service, svc.Spec.ClusterIP)
	}
	return svc.Spec.ClusterIP, nil
}
