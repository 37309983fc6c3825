package conflicts

import (
	"fmt"
	"reflect"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// mf is one managedFields entry: manager, subresource ("" or "status"),
// seconds after t0 of its time, and its fieldsV1 JSON.
func mf(manager, subresource string, sec int, fields string) metav1.ManagedFieldsEntry {
	return metav1.ManagedFieldsEntry{
		Manager:     manager,
		Operation:   metav1.ManagedFieldsOperationUpdate,
		APIVersion:  "v1",
		Time:        &metav1.Time{Time: t0.Add(time.Duration(sec) * time.Second)},
		FieldsType:  "FieldsV1",
		FieldsV1:    &metav1.FieldsV1{Raw: []byte(fields)},
		Subresource: subresource,
	}
}

func applied(e metav1.ManagedFieldsEntry) metav1.ManagedFieldsEntry {
	e.Operation = metav1.ManagedFieldsOperationApply
	return e
}

const (
	created    = `{"f:spec":{"f:ports":{".":{},"k:{\"port\":80,\"protocol\":\"TCP\"}":{".":{},"f:port":{},"f:protocol":{}}},"f:type":{}}}`
	annotation = `{"f:metadata":{"f:annotations":{".":{},"f:example.com/owner":{}}}}`
	lbStatus   = `{"f:status":{"f:loadBalancer":{"f:ingress":{}}}}`
	ports      = `{"f:spec":{"f:ports":{"k:{\"port\":80,\"protocol\":\"TCP\"}":{"f:targetPort":{}}}}}`
	finalizer  = `{"f:metadata":{"f:finalizers":{".":{},"v:\"example.com/cleanup\"":{}}}}`
	empty      = `{}`
)

func TestTakeovers(t *testing.T) {
	tests := map[string]struct {
		old, cur []metav1.ManagedFieldsEntry
		want     []Takeover
	}{
		"one manager rewrites its own fields": {
			old: []metav1.ManagedFieldsEntry{mf("kubectl", "", 0, created), mf("lb-a", "", 1, annotation), mf("lb-a", "status", 1, lbStatus)},
			cur: []metav1.ManagedFieldsEntry{mf("kubectl", "", 0, created), mf("lb-a", "", 9, annotation), mf("lb-a", "status", 9, lbStatus)},
		},
		"a new field is no takeover": {
			old: []metav1.ManagedFieldsEntry{mf("kubectl", "", 0, created)},
			cur: []metav1.ManagedFieldsEntry{mf("kubectl", "", 0, created), mf("lb-a", "", 1, annotation)},
		},
		"another manager takes an annotation": {
			old:  []metav1.ManagedFieldsEntry{mf("kubectl", "", 0, created), mf("lb-a", "", 1, annotation)},
			cur:  []metav1.ManagedFieldsEntry{mf("kubectl", "", 0, created), mf("lb-a", "", 1, `{"f:metadata":{"f:annotations":{".":{}}}}`), mf("lb-b", "", 2, `{"f:metadata":{"f:annotations":{"f:example.com/owner":{}}}}`)},
			want: []Takeover{{Manager: "lb-b", From: []string{"lb-a"}, Fields: []string{"metadata.annotations[example.com/owner]"}}},
		},
		"another manager takes the load-balancer status": {
			old:  []metav1.ManagedFieldsEntry{mf("kubectl", "", 0, created), mf("lb-a", "status", 1, lbStatus)},
			cur:  []metav1.ManagedFieldsEntry{mf("kubectl", "", 0, created), mf("lb-b", "status", 2, lbStatus)},
			want: []Takeover{{Manager: "lb-b", From: []string{"lb-a"}, Fields: []string{"status.loadBalancer.ingress"}}},
		},
		"one manager moving a field between its own entries": {
			old: []metav1.ManagedFieldsEntry{mf("lb-a", "", 1, annotation)},
			cur: []metav1.ManagedFieldsEntry{mf("lb-a", "", 1, empty), applied(mf("lb-a", "", 2, annotation))},
		},
		"list item by key": {
			old:  []metav1.ManagedFieldsEntry{mf("kubectl", "", 0, created), mf("mesh", "", 1, ports)},
			cur:  []metav1.ManagedFieldsEntry{mf("kubectl", "", 0, created), mf("helm", "", 2, ports)},
			want: []Takeover{{Manager: "helm", From: []string{"mesh"}, Fields: []string{"spec.ports[port=80,protocol=TCP].targetPort"}}},
		},
		"removal by the only writer": {
			old:  []metav1.ManagedFieldsEntry{mf("kubectl", "", 0, created), mf("cleaner", "", 1, finalizer), mf("janitor", "", 1, ports)},
			cur:  []metav1.ManagedFieldsEntry{mf("kubectl", "", 0, created), mf("janitor", "", 5, ports)},
			want: []Takeover{{Manager: "janitor", From: []string{"cleaner"}, Fields: []string{"metadata.finalizers", "metadata.finalizers[example.com/cleanup]"}}},
		},
		"removal with no identifiable writer": {
			old: []metav1.ManagedFieldsEntry{mf("kubectl", "", 0, created), mf("cleaner", "", 1, finalizer)},
			cur: []metav1.ManagedFieldsEntry{mf("kubectl", "", 0, created)},
		},
		"removal by the owner itself": {
			old: []metav1.ManagedFieldsEntry{mf("kubectl", "", 0, created), mf("lb-a", "", 1, annotation), mf("lb-a", "status", 1, lbStatus)},
			cur: []metav1.ManagedFieldsEntry{mf("kubectl", "", 0, created), mf("lb-a", "status", 4, lbStatus)},
		},
		"shared field changed by one of its appliers": {
			old:  []metav1.ManagedFieldsEntry{applied(mf("ci", "", 1, annotation)), applied(mf("argo", "", 1, annotation))},
			cur:  []metav1.ManagedFieldsEntry{applied(mf("argo", "", 3, annotation)), applied(mf("ci", "", 1, `{"f:metadata":{"f:annotations":{".":{}}}}`))},
			want: []Takeover{{Manager: "argo", From: []string{"ci"}, Fields: []string{"metadata.annotations[example.com/owner]"}}},
		},
		"two managers lose fields to one": {
			old: []metav1.ManagedFieldsEntry{mf("lb-a", "", 1, annotation), mf("lb-b", "status", 1, lbStatus)},
			cur: []metav1.ManagedFieldsEntry{mf("lb-c", "", 2, annotation), mf("lb-c", "status", 2, lbStatus)},
			want: []Takeover{{Manager: "lb-c", From: []string{"lb-a", "lb-b"}, Fields: []string{
				"metadata.annotations", "metadata.annotations[example.com/owner]", "status.loadBalancer.ingress"}}},
		},
		"no managedFields before": {
			cur: []metav1.ManagedFieldsEntry{mf("lb-b", "", 2, annotation)},
		},
		"managedFields cleared": {
			old: []metav1.ManagedFieldsEntry{mf("lb-a", "", 1, annotation)},
		},
		"unreadable fieldsV1 is ignored": {
			old: []metav1.ManagedFieldsEntry{mf("lb-a", "", 1, `{"f:metadata":`)},
			cur: []metav1.ManagedFieldsEntry{mf("lb-b", "", 2, annotation)},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got := Takeovers(tc.old, tc.cur)
			if len(got) == 0 && len(tc.want) == 0 {
				return
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Takeovers =\n%+v\nwant\n%+v", got, tc.want)
			}
		})
	}
}

func TestDisplayPath(t *testing.T) {
	tests := map[string]struct {
		raw  string
		want []string
	}{
		"annotation with dots and slash": {raw: annotation, want: []string{"metadata.annotations", "metadata.annotations[example.com/owner]"}},
		"keyed list item":                {raw: created, want: []string{"spec.ports", `spec.ports[port=80,protocol=TCP]`, `spec.ports[port=80,protocol=TCP].port`, `spec.ports[port=80,protocol=TCP].protocol`, "spec.type"}},
		"set value":                      {raw: finalizer, want: []string{"metadata.finalizers", "metadata.finalizers[example.com/cleanup]"}},
		"list index":                     {raw: `{"f:spec":{"f:items":{"i:2":{}}}}`, want: []string{"spec.items[2]"}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			var got []string
			if err := flatten([]byte(tc.raw), "", func(p string) { got = append(got, displayPath(p)) }); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(sorted(got), tc.want) {
				t.Errorf("paths = %q, want %q", sorted(got), tc.want)
			}
		})
	}
}

func sorted(s []string) []string {
	m := map[string]bool{}
	for _, x := range s {
		m[x] = true
	}
	return sortedKeys(m)
}

// history is the managedFields of one Service after each write of a
// sequence, as the API server would record them: writes[i] names the
// manager of write i, which rewrites the annotation and the status.
func history(writes []string) [][]metav1.ManagedFieldsEntry {
	var out [][]metav1.ManagedFieldsEntry
	base := mf("kubectl", "", 0, created)
	for i, w := range writes {
		out = append(out, []metav1.ManagedFieldsEntry{base, mf(w, "", i+1, annotation), mf(w, "status", i+1, lbStatus)})
	}
	return out
}

func ExampleTakeovers() {
	old := []metav1.ManagedFieldsEntry{mf("lb-a", "status", 1, lbStatus)}
	cur := []metav1.ManagedFieldsEntry{mf("lb-b", "status", 2, lbStatus)}
	for _, to := range Takeovers(old, cur) {
		fmt.Println(to.Manager, "took", to.Fields, "from", to.From)
	}
	// Output: lb-b took [status.loadBalancer.ingress] from [lb-a]
}
