package conflicts

import (
	"fmt"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/clock"
)

// lbStatusPrefix is the fieldsV1 path of status.loadBalancer: the field a
// load-balancer controller writes with the addresses it provisioned.
var lbStatusPrefix = "f:status" + pathSep + "f:loadBalancer" + pathSep

// LoadBalancerStatusOwners returns the field managers that own fields under
// svc's status.loadBalancer, sorted.
func LoadBalancerStatusOwners(svc *corev1.Service) []string {
	names := map[string]bool{}
	for _, e := range svc.ManagedFields {
		if e.FieldsV1 == nil || e.Manager == "" || names[e.Manager] {
			continue
		}
		_ = flatten(e.FieldsV1.Raw, "", func(path string) {
			if strings.HasPrefix(path, lbStatusPrefix) {
				names[e.Manager] = true
			}
		})
	}
	return sortedKeys(names)
}

// defaultClassLoadBalancer reports whether svc is a LoadBalancer Service
// that every load-balancer controller of the default class may reconcile.
func defaultClassLoadBalancer(svc *corev1.Service) bool {
	return svc != nil && svc.Spec.Type == corev1.ServiceTypeLoadBalancer &&
		(svc.Spec.LoadBalancerClass == nil || *svc.Spec.LoadBalancerClass == "")
}

// maxControllers bounds the load-balancer controllers remembered from
// history; a cluster runs one or two.
const maxControllers = 32

// LoadBalancerControllers keeps the field managers seen writing the status
// of default-class LoadBalancer Services (type LoadBalancer, no
// spec.loadBalancerClass): the load-balancer controllers that would all
// reconcile a new such Service. A manager counts while it owns
// status.loadBalancer of any such Service, and for a TTL after it was last
// seen owning one, so two controllers that keep taking one Service's status
// from each other both count. It is safe for concurrent use.
type LoadBalancerControllers struct {
	clock clock.PassiveClock
	ttl   time.Duration

	mu      sync.Mutex
	current map[string]int       // manager → Services whose status it owns now
	recent  map[string]time.Time // manager → last seen owning one
}

// NewLoadBalancerControllers returns an empty set that remembers a
// controller for ttl after it was last seen.
func NewLoadBalancerControllers(clk clock.PassiveClock, ttl time.Duration) *LoadBalancerControllers {
	return &LoadBalancerControllers{clock: clk, ttl: ttl, current: map[string]int{}, recent: map[string]time.Time{}}
}

// Observe records one change of a Service: old is nil when it was
// added, cur is nil when it was deleted.
func (c *LoadBalancerControllers) Observe(old, cur *corev1.Service) {
	var before, after []string
	if defaultClassLoadBalancer(old) {
		before = LoadBalancerStatusOwners(old)
	}
	if defaultClassLoadBalancer(cur) {
		after = LoadBalancerStatusOwners(cur)
	}
	if len(before) == 0 && len(after) == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.clock.Now()
	for _, m := range before {
		if c.current[m]--; c.current[m] <= 0 {
			delete(c.current, m)
		}
	}
	for _, m := range after {
		c.current[m]++
		c.recent[m] = now
	}
	c.pruneLocked(now)
}

// List returns the load-balancer controllers seen, sorted.
func (c *LoadBalancerControllers) List() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pruneLocked(c.clock.Now())
	names := map[string]bool{}
	for m := range c.current {
		names[m] = true
	}
	for m := range c.recent {
		names[m] = true
	}
	return sortedKeys(names)
}

func (c *LoadBalancerControllers) pruneLocked(now time.Time) {
	prune(c.recent, now.Add(-c.ttl), maxControllers)
}

// StaticHints returns the hints for a Service about to be created or
// changed in a cluster where lbControllers are the load-balancer
// controllers seen writing the status of default-class LoadBalancer
// Services: a LoadBalancer Service without spec.loadBalancerClass, while
// two or more such controllers run, may be reconciled by all of them.
func StaticHints(svc *corev1.Service, lbControllers []string) []string {
	if !defaultClassLoadBalancer(svc) || len(lbControllers) < 2 {
		return nil
	}
	return []string{fmt.Sprintf("Service %s is type LoadBalancer without spec.loadBalancerClass, and %d load-balancer controllers write Service status in this cluster (%s): each may reconcile it and overwrite the other's work. "+
		"Set spec.loadBalancerClass to the class of the one that should (it can only be set when the Service is created or changed to type LoadBalancer).",
		name(svc), len(lbControllers), joinNames(lbControllers))}
}

// OfflineHints returns the hints for a Service in a manifest, where the
// cluster's load-balancer controllers are unknown: a LoadBalancer Service
// without spec.loadBalancerClass is reconciled by every controller of the
// default class.
func OfflineHints(svc *corev1.Service) []string {
	if !defaultClassLoadBalancer(svc) {
		return nil
	}
	return []string{fmt.Sprintf("Service %s is type LoadBalancer without spec.loadBalancerClass: every load-balancer controller of the default class will reconcile it. "+
		"If the cluster runs more than one (a cloud provider's and MetalLB, say), set spec.loadBalancerClass to the class of the one that should; it can only be set at creation.",
		name(svc))}
}

func name(svc *corev1.Service) string {
	if svc.Namespace == "" {
		return svc.Name
	}
	return svc.Namespace + "/" + svc.Name
}
