package node

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
)

// NetguardNamespace and NetguardRelease are where `helm install` puts
// netguard.
const (
	NetguardNamespace = "netguard"
	NetguardRelease   = "netguard"
)

func (c *Cluster) waitAPIServer(ctx context.Context) error {
	return waitFor(ctx, 60*time.Second, "kube-apiserver", func() error {
		body, err := c.Client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		if err != nil {
			return fmt.Errorf("%v (%s)", err, body)
		}
		return nil
	})
}

// apiServerEndpoints points the kubernetes Service at the API server: with
// --endpoint-reconciler-type=none it does not do so itself, and pods
// (netguard's included) reach the API server through that Service.
func (c *Cluster) apiServerEndpoints(ctx context.Context) error {
	ep := &corev1.Endpoints{ //nolint:staticcheck // the mirroring controller turns it into an EndpointSlice
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "kubernetes"},
		Subsets: []corev1.EndpointSubset{{ //nolint:staticcheck
			Addresses: []corev1.EndpointAddress{{IP: NodeIP}},
			Ports:     []corev1.EndpointPort{{Name: "https", Port: APIPort, Protocol: corev1.ProtocolTCP}},
		}},
	}
	return waitFor(ctx, 30*time.Second, "the kubernetes Service's endpoints", func() error {
		_, err := c.Client.CoreV1().Endpoints("default").Create(ctx, ep, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			return nil
		}
		return err
	})
}

func (c *Cluster) waitNodeReady(ctx context.Context) error {
	return waitFor(ctx, 90*time.Second, "node "+NodeName, func() error {
		n, err := c.Client.CoreV1().Nodes().Get(ctx, NodeName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, cond := range n.Status.Conditions {
			if cond.Type == corev1.NodeReady {
				if cond.Status == corev1.ConditionTrue {
					return nil
				}
				return fmt.Errorf("%s: %s", cond.Reason, cond.Message)
			}
		}
		return fmt.Errorf("no Ready condition yet")
	})
}

// corefile answers the cluster's names (kubernetes plugin), the external
// name api.example.com (hosts) and NXDOMAIN for every other name, without
// an upstream: nothing leaves the machine. Every query is logged, so tests
// count them per pod.
const corefile = `cluster.local:53 in-addr.arpa:53 ip6.arpa:53 {
    errors
    log
    health :8080
    ready :8181
    prometheus :9153
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }
}
example.com:53 {
    errors
    log
    hosts {
        203.0.113.10 api.example.com
    }
}
.:53 {
    errors
    log
    template ANY ANY {
        rcode NXDOMAIN
    }
}
`

// ExternalName is a name outside the cluster that CoreDNS answers.
const ExternalName = "api.example.com"

// installCoreDNS runs CoreDNS as a 2-replica Deployment behind the
// kube-system/kube-dns Service at ClusterDNSIP, and waits until both
// replicas are ready and kube-proxy has their endpoints.
func (c *Cluster) installCoreDNS(ctx context.Context) error {
	labels := map[string]string{"k8s-app": "kube-dns"}
	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: "coredns"},
		Data:       map[string]string{"Corefile": corefile},
	}
	deploy := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: "coredns", Labels: labels},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](2),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					DNSPolicy: corev1.DNSDefault,
					Containers: []corev1.Container{{
						Name:  "coredns",
						Image: CoreDNSImage,
						Args:  []string{"-conf", "/etc/coredns/Corefile"},
						Ports: []corev1.ContainerPort{
							{Name: "dns", ContainerPort: 53, Protocol: corev1.ProtocolUDP},
							{Name: "dns-tcp", ContainerPort: 53, Protocol: corev1.ProtocolTCP},
							{Name: "metrics", ContainerPort: 9153, Protocol: corev1.ProtocolTCP},
						},
						ReadinessProbe: &corev1.Probe{
							ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/ready", Port: intstr.FromInt32(8181)}},
							PeriodSeconds: 2,
						},
						LivenessProbe: &corev1.Probe{
							ProbeHandler:     corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/health", Port: intstr.FromInt32(8080)}},
							PeriodSeconds:    10,
							FailureThreshold: 5,
						},
						SecurityContext: &corev1.SecurityContext{
							AllowPrivilegeEscalation: ptr.To(false),
							ReadOnlyRootFilesystem:   ptr.To(true),
							Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}, Add: []corev1.Capability{"NET_BIND_SERVICE"}},
						},
						VolumeMounts: []corev1.VolumeMount{{Name: "config", MountPath: "/etc/coredns"}},
					}},
					Volumes: []corev1.Volume{{Name: "config", VolumeSource: corev1.VolumeSource{
						ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "coredns"}},
					}}},
				},
			},
		},
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: "kube-dns", Labels: labels},
		Spec: corev1.ServiceSpec{
			ClusterIP: ClusterDNSIP,
			Selector:  labels,
			Ports: []corev1.ServicePort{
				{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP, TargetPort: intstr.FromInt32(53)},
				{Name: "dns-tcp", Port: 53, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt32(53)},
				{Name: "metrics", Port: 9153, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt32(9153)},
			},
		},
	}
	// The kubernetes plugin watches Services, EndpointSlices, Namespaces
	// and Pods.
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: "coredns"}}
	role := &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: "system:coredns"},
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"services", "pods", "namespaces"}, Verbs: []string{"list", "watch"}},
			{APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}, Verbs: []string{"list", "watch"}},
		},
	}
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "system:coredns"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: role.Name},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Namespace: "kube-system", Name: sa.Name}},
	}
	deploy.Spec.Template.Spec.ServiceAccountName = sa.Name
	if _, err := c.Client.CoreV1().ServiceAccounts("kube-system").Create(ctx, sa, metav1.CreateOptions{}); err != nil {
		return err
	}
	if _, err := c.Client.RbacV1().ClusterRoles().Create(ctx, role, metav1.CreateOptions{}); err != nil {
		return err
	}
	if _, err := c.Client.RbacV1().ClusterRoleBindings().Create(ctx, binding, metav1.CreateOptions{}); err != nil {
		return err
	}
	if _, err := c.Client.CoreV1().ConfigMaps("kube-system").Create(ctx, cm, metav1.CreateOptions{}); err != nil {
		return err
	}
	if _, err := c.Client.CoreV1().Services("kube-system").Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		return err
	}
	if _, err := c.Client.AppsV1().Deployments("kube-system").Create(ctx, deploy, metav1.CreateOptions{}); err != nil {
		return err
	}
	if err := c.WaitDeployment(ctx, "kube-system", "coredns", 2*time.Minute); err != nil {
		return fmt.Errorf("%w\nkubelet log:\n%s", err, LogTail("kubelet", 30))
	}
	return c.WaitEndpoints(ctx, "kube-system", "kube-dns", 2)
}

// WaitDeployment waits until every replica of a Deployment is updated and
// available.
func (c *Cluster) WaitDeployment(ctx context.Context, ns, name string, limit time.Duration) error {
	return waitFor(ctx, limit, "Deployment "+ns+"/"+name, func() error {
		d, err := c.Client.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		want := ptr.Deref(d.Spec.Replicas, 1)
		s := d.Status
		if s.ObservedGeneration >= d.Generation && s.UpdatedReplicas == want && s.AvailableReplicas == want && s.Replicas == want {
			return nil
		}
		return fmt.Errorf("%d of %d available, %d updated, %d in all", s.AvailableReplicas, want, s.UpdatedReplicas, s.Replicas)
	})
}

// WaitEndpoints waits until a Service has n ready endpoints.
func (c *Cluster) WaitEndpoints(ctx context.Context, ns, name string, n int) error {
	return waitFor(ctx, time.Minute, "endpoints of "+ns+"/"+name, func() error {
		slices, err := c.Client.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{LabelSelector: "kubernetes.io/service-name=" + name})
		if err != nil {
			return err
		}
		ready := 0
		for _, s := range slices.Items {
			for _, e := range s.Endpoints {
				if ptr.Deref(e.Conditions.Ready, false) {
					ready++
				}
			}
		}
		if ready != n {
			return fmt.Errorf("%d ready endpoints, want %d", ready, n)
		}
		return nil
	})
}

// Helm runs `helm install|upgrade` of charts/netguard as the node runs it:
// the chart's defaults (TLS from cert-manager) but two replicas and the
// imported image; extra are more helm arguments (--set ...).
func (c *Cluster) Helm(ctx context.Context, verb string, extra ...string) error {
	tag := c.NetguardImage[strings.LastIndex(c.NetguardImage, ":")+1:]
	args := []string{verb, NetguardRelease, repoFile("charts/netguard"),
		"--kubeconfig", c.Kubeconfig, "--namespace", NetguardNamespace,
		"--set", "replicaCount=2",
		"--set-string", "image.repository=" + strings.TrimSuffix(c.NetguardImage, ":"+tag),
		"--set-string", "image.tag=" + tag, // a commit may be all digits
		"--set", "image.pullPolicy=Never",
	}
	if verb == "install" {
		args = append(args, "--create-namespace")
	}
	return c.helm(ctx, append(args, extra...)...)
}

// HelmUninstall removes netguard's release.
func (c *Cluster) HelmUninstall(ctx context.Context) error {
	return c.helm(ctx, "uninstall", NetguardRelease, "--kubeconfig", c.Kubeconfig,
		"--namespace", NetguardNamespace, "--wait", "--timeout", "120s")
}

// helm runs helm; its output is in the error when it fails.
func (c *Cluster) helm(ctx context.Context, args ...string) error {
	out, err := exec.CommandContext(ctx, c.opts.Helm, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("helm %s: %v\n%s", args[0], err, out)
	}
	return nil
}

// WaitPodsGone waits until no pod in ns matches opts (its label or field
// selector), terminating ones included.
func (c *Cluster) WaitPodsGone(ctx context.Context, ns string, opts metav1.ListOptions) error {
	what := fmt.Sprintf("no pod %s%s left in %s", opts.LabelSelector, opts.FieldSelector, ns)
	return waitFor(ctx, 2*time.Minute, what, func() error {
		pods, err := c.Client.CoreV1().Pods(ns).List(ctx, opts)
		if err != nil {
			return err
		}
		if len(pods.Items) > 0 {
			return fmt.Errorf("%d left", len(pods.Items))
		}
		return nil
	})
}

// WaitRolledOut waits until a Deployment's pods are exactly those of its
// current revision, as many as it asks for: no pod of an earlier revision
// is left, not even a terminating one. (A terminating netguard pod keeps
// answering on the connections it has, and the API server keeps its
// connections to a webhook open, so until then a request may still reach
// the previous settings.)
func (c *Cluster) WaitRolledOut(ctx context.Context, ns, name string) error {
	return waitFor(ctx, 3*time.Minute, "Deployment "+ns+"/"+name+" rolled out", func() error {
		d, err := c.Client.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		sel := metav1.FormatLabelSelector(d.Spec.Selector)
		rss, err := c.Client.AppsV1().ReplicaSets(ns).List(ctx, metav1.ListOptions{LabelSelector: sel})
		if err != nil {
			return err
		}
		hash := ""
		for _, rs := range rss.Items {
			if rs.Annotations["deployment.kubernetes.io/revision"] == d.Annotations["deployment.kubernetes.io/revision"] {
				hash = rs.Labels["pod-template-hash"]
			}
		}
		pods, err := c.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: sel})
		if err != nil {
			return err
		}
		want := int(ptr.Deref(d.Spec.Replicas, 1))
		current := 0
		for _, p := range pods.Items {
			if p.DeletionTimestamp == nil && p.Labels["pod-template-hash"] == hash && isReady(p) {
				current++
			}
		}
		if current != want || len(pods.Items) != want {
			return fmt.Errorf("%d of %d pods ready at the current revision, %d pods in all", current, want, len(pods.Items))
		}
		return nil
	})
}

func isReady(p corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// WaitNetguard waits until netguard's serving certificate is in place (in
// cert-manager mode: the Certificate Ready and every webhook's caBundle its
// CA), its Deployment has rolled out and the API server reaches its pod
// webhook through netguard's Service: a dry-run pod in an opted-in
// namespace comes back mutated.
func (c *Cluster) WaitNetguard(ctx context.Context) error {
	if err := c.waitCertManagerTLS(ctx); err != nil {
		return err
	}
	if err := c.WaitRolledOut(ctx, NetguardNamespace, NetguardRelease); err != nil {
		return err
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "netguard-probe", Labels: map[string]string{"netguard.io/inject": "enabled"}}}
	if _, err := c.Client.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	return waitFor(ctx, 2*time.Minute, "netguard's pod webhook through its Service", func() error {
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{GenerateName: "probe-"},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "probe", Image: PauseImage}}},
		}
		got, err := c.Client.CoreV1().Pods(ns.Name).Create(ctx, pod, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err != nil {
			return err
		}
		if got.Annotations["netguard.io/status"] == "" {
			return fmt.Errorf("a pod in an opted-in namespace was not mutated")
		}
		return nil
	})
}

// HelmRollback rolls netguard's release back to the revision before the
// current one and waits for its pods.
func (c *Cluster) HelmRollback(ctx context.Context) error {
	return c.helm(ctx, "rollback", NetguardRelease, "--kubeconfig", c.Kubeconfig,
		"--namespace", NetguardNamespace, "--wait", "--timeout", "180s")
}
