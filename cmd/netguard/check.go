package main

import (
	"encoding/json"
	"fmt"
	"hash/fnv"
	"io"
	"strconv"

	"github.com/spf13/cobra"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/netguard-io/netguard/config"
	"github.com/netguard-io/netguard/internal/manifest"
	pconflicts "github.com/netguard-io/netguard/policies/conflicts"
	sg "github.com/netguard-io/netguard/policies/selectorguard"
)

// daemonSetPods is how many pods a DaemonSet is rendered with offline,
// where the number of nodes is unknown.
const daemonSetPods = 3

type checkOptions struct {
	*rootOptions
	file, against, namespace string
}

func newCheckCommand(root *rootOptions) *cobra.Command {
	opts := &checkOptions{rootOptions: root}
	cmd := &cobra.Command{
		Use:   "check -f FILE|- [--against OLD]",
		Short: "Run the Service selector guard on manifests",
		Long: `Run the Service selector rules on the Services in FILE, against pods
rendered from the workloads in the same manifests (spec.replicas pods per
Deployment, StatefulSet, ReplicaSet and Argo Rollout, ` + strconv.Itoa(daemonSetPods) + ` per DaemonSet).

With --against OLD, FILE is the new version of the manifests in OLD (what a
pull request changes): the live pods are those of OLD's workloads, OLD's
Services are the previous selectors, and the rules see the rollout that
applying FILE would start, as the webhook would in the cluster.

Exit status: 0 when no Service would be denied (warnings are printed),
1 when one would, 2 on a usage or input error.`,
		Example: `  netguard check -f rendered.yaml
  helm template app ./chart > new.yaml && netguard check -f new.yaml --against deployed.yaml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := opts.loadConfig()
			if err != nil {
				return err
			}
			denied, err := runCheck(opts, cfg, cmd.OutOrStdout())
			if err != nil {
				return err
			}
			if denied > 0 {
				return &exitError{code: 1, msg: fmt.Sprintf("%d Service(s) would be denied", denied)}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVarP(&opts.file, "filename", "f", "", `manifests to check, or "-" for standard input (required)`)
	f.StringVar(&opts.against, "against", "", "the previous version of the same manifests: its workloads' pods are the live pods")
	f.StringVarP(&opts.namespace, "namespace", "n", "default", "namespace of objects that do not name one")
	_ = cmd.MarkFlagRequired("filename")
	return cmd
}

// runCheck prints one line per finding and returns how many Services would
// be denied.
func runCheck(opts *checkOptions, cfg *config.Config, out io.Writer) (int, error) {
	docs, err := manifest.ReadFile(opts.file)
	if err != nil {
		return 0, err
	}
	var oldDocs []manifest.Document
	if opts.against != "" {
		if oldDocs, err = manifest.ReadFile(opts.against); err != nil {
			return 0, err
		}
	}
	newSet, err := renderManifests(docs, opts.namespace)
	if err != nil {
		return 0, err
	}
	view := newSet.view(nil)
	var oldSet *renderedSet
	if opts.against != "" {
		if oldSet, err = renderManifests(oldDocs, opts.namespace); err != nil {
			return 0, err
		}
		view = newSet.view(oldSet)
	}
	denied := 0
	for _, s := range newSet.services {
		var old *corev1.Service
		if oldSet != nil {
			old = oldSet.service(s.svc.Namespace, s.svc.Name)
		}
		d := sg.Decide(sg.Check(s.svc, old, view), cfg.ServiceGuard.Mode, s.svc)
		for _, o := range d.Outcomes {
			action := string(o.Action)
			if o.Action == sg.ActionOverridden {
				action = fmt.Sprintf("%s by %s=%q", action, sg.AllowSubsetAnnotation, d.OverrideReason)
			}
			fmt.Fprintf(out, "%s: %s: %s\n", s.doc, action, o.Finding.Message)
		}
		if cfg.Conflicts.Enabled {
			for _, h := range pconflicts.OfflineHints(s.svc) {
				fmt.Fprintf(out, "%s: hint: %s\n", s.doc, h)
			}
		}
		if !d.Allowed {
			denied++
		}
	}
	return denied, nil
}

type renderedService struct {
	doc manifest.Document
	svc *corev1.Service
}

// renderedSet is what a set of manifests describes: Services, and
// workloads with the pods their templates create.
type renderedSet struct {
	services  []renderedService
	workloads []renderedWorkload
}

type renderedWorkload struct {
	kind            sg.Kind
	namespace, name string
	labels          map[string]string // pod template labels
	revision        string            // hash of the pod template
	replicas        int
}

func (r *renderedSet) service(ns, name string) *corev1.Service {
	for _, s := range r.services {
		if s.svc.Namespace == ns && s.svc.Name == name {
			return s.svc
		}
	}
	return nil
}

func (r *renderedSet) workload(kind sg.Kind, ns, name string) *renderedWorkload {
	for i, w := range r.workloads {
		if w.kind == kind && w.namespace == ns && w.name == name {
			return &r.workloads[i]
		}
	}
	return nil
}

// view returns the cluster as the rules see it. Without old, every
// workload runs its new template. With old, workloads present in old still
// run old's pods and roll out the new template, which has no pods yet.
func (r *renderedSet) view(old *renderedSet) sg.StaticView {
	var v sg.StaticView
	for _, w := range r.workloads {
		live := w
		templateRevision := w.revision
		if old != nil {
			if prev := old.workload(w.kind, w.namespace, w.name); prev != nil {
				live = *prev
				if prev.revision != w.revision {
					templateRevision = "" // the new revision has no pods yet
				}
			}
		}
		v = append(v, sg.Workload{
			Kind: w.kind, Namespace: w.namespace, Name: w.name,
			TemplateLabels:   w.labels,
			TemplateRevision: templateRevision,
			Pods:             renderPods(live),
		})
	}
	return v
}

// renderPods creates the pods a workload's controller would, with the
// revision labels the controller adds.
func renderPods(w renderedWorkload) []sg.PodInfo {
	pods := make([]sg.PodInfo, w.replicas)
	for i := range pods {
		labels := make(map[string]string, len(w.labels)+3)
		for k, v := range w.labels {
			labels[k] = v
		}
		name := fmt.Sprintf("%s-%s-%d", w.name, w.revision, i)
		switch w.kind {
		case sg.KindDeployment, sg.KindReplicaSet:
			labels[sg.LabelPodTemplateHash] = w.revision
		case sg.KindRollout:
			labels[sg.LabelRolloutsPodTemplateHash] = w.revision
		case sg.KindStatefulSet:
			name = fmt.Sprintf("%s-%d", w.name, i)
			labels[sg.LabelControllerRevisionHash] = w.name + "-" + w.revision
			labels[appsv1.StatefulSetPodNameLabel] = name
			labels[appsv1.PodIndexLabel] = strconv.Itoa(i)
		case sg.KindDaemonSet:
			labels[sg.LabelControllerRevisionHash] = w.revision
		}
		pods[i] = sg.PodInfo{Name: name, Labels: labels, Revision: w.revision}
	}
	return pods
}

// workloadKinds maps manifest kinds to workload kinds; Pods stand alone.
var workloadKinds = map[string]sg.Kind{
	"apps/Deployment":     sg.KindDeployment,
	"apps/StatefulSet":    sg.KindStatefulSet,
	"apps/DaemonSet":      sg.KindDaemonSet,
	"apps/ReplicaSet":     sg.KindReplicaSet,
	"argoproj.io/Rollout": sg.KindRollout,
	"/Pod":                sg.KindPod,
}

func renderManifests(docs []manifest.Document, defaultNamespace string) (*renderedSet, error) {
	set := &renderedSet{}
	for _, doc := range docs {
		obj := doc.Object
		if obj == nil {
			continue
		}
		ns := obj.GetNamespace()
		if ns == "" {
			ns = defaultNamespace
		}
		gk := obj.GroupVersionKind().GroupKind()
		if gk.Group == "" && gk.Kind == "Service" {
			svc := &corev1.Service{}
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(obj.Object, svc); err != nil {
				return nil, fmt.Errorf("%s: %w", doc, err)
			}
			svc.Namespace = ns
			set.services = append(set.services, renderedService{doc: doc, svc: svc})
			continue
		}
		kind := workloadKinds[gk.Group+"/"+gk.Kind]
		if kind == "" {
			continue
		}
		w, err := renderWorkload(doc, kind, ns)
		if err != nil {
			return nil, err
		}
		set.workloads = append(set.workloads, w)
	}
	return set, nil
}

func renderWorkload(doc manifest.Document, kind sg.Kind, ns string) (renderedWorkload, error) {
	obj := doc.Object.Object
	w := renderedWorkload{kind: kind, namespace: ns, name: doc.Object.GetName(), replicas: 1}
	templatePath := []string{"spec", "template"}
	if kind == sg.KindPod {
		templatePath = nil
		w.labels = doc.Object.GetLabels()
	}
	if templatePath != nil {
		labels, _, err := unstructured.NestedStringMap(obj, append(templatePath, "metadata", "labels")...)
		if err != nil {
			return w, fmt.Errorf("%s: spec.template.metadata.labels: %w", doc, err)
		}
		w.labels = labels
		if replicas, found, err := unstructured.NestedFieldNoCopy(obj, "spec", "replicas"); err == nil && found {
			n, ok := replicas.(int64)
			if !ok || n < 0 {
				return w, fmt.Errorf("%s: spec.replicas: want a number >= 0, got %v", doc, replicas)
			}
			w.replicas = int(n)
		}
		if kind == sg.KindDaemonSet {
			w.replicas = daemonSetPods
		}
	}
	template, _, _ := unstructured.NestedFieldNoCopy(obj, templatePath...)
	if templatePath == nil {
		template = obj["spec"]
	}
	w.revision = templateHash(template)
	return w, nil
}

// templateHash is a short, stable id of a pod template, standing in for the
// pod-template-hash the controller would compute.
func templateHash(template any) string {
	b, _ := json.Marshal(template) // maps marshal with sorted keys
	h := fnv.New32a()
	h.Write(b)
	return strconv.FormatUint(uint64(h.Sum32()), 36)
}
