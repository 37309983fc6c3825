package conflicts

import (
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Takeover is one write in which a field manager took fields of an object
// that other field managers owned.
type Takeover struct {
	// Manager is the field manager that wrote.
	Manager string
	// From are the field managers that owned the fields before, sorted.
	From []string
	// Fields are the fields taken, as field paths such as
	// metadata.annotations[example.com/owner] or status.loadBalancer.ingress,
	// sorted.
	Fields []string
}

// Takeovers compares the managedFields of two versions of one object and
// returns, per writing manager, the fields it took from other managers:
//
//   - a field that left manager A's entry and entered manager B's entry was
//     taken by B from A;
//   - a field that left A's entry and entered no other entry was removed,
//     or changed by a manager that already shared it (server-side apply);
//     it counts as taken from A by the one manager whose entry got a new
//     time in this change (the writer), if there is exactly one, it is not
//     A, and it owns the field afterwards or no one does. The API server
//     does not record who removes a field, so a removal with no
//     identifiable writer is not counted.
//
// Managers are compared by name: one controller writing the object and its
// status subresource has two entries under one name and never takes
// fields from itself. Entries whose fieldsV1 cannot be read are ignored.
func Takeovers(old, cur []metav1.ManagedFieldsEntry) []Takeover {
	if len(old) == 0 || len(cur) == 0 {
		return nil
	}
	before, after := ownership(old), ownership(cur)
	writers := writers(old, cur)

	type taken struct {
		from   map[string]bool
		fields map[string]bool
	}
	byManager := map[string]*taken{}
	take := func(manager, from, path string) {
		t := byManager[manager]
		if t == nil {
			t = &taken{from: map[string]bool{}, fields: map[string]bool{}}
			byManager[manager] = t
		}
		t.from[from] = true
		t.fields[path] = true
	}
	for path, was := range before {
		now := after[path]
		for loser := range was {
			if now[loser] {
				continue
			}
			gained := false
			for gainer := range now {
				if !was[gainer] {
					take(gainer, loser, path)
					gained = true
				}
			}
			if !gained && len(writers) == 1 && writers[0] != loser && (len(now) == 0 || now[writers[0]]) {
				take(writers[0], loser, path)
			}
		}
	}

	out := make([]Takeover, 0, len(byManager))
	for manager, t := range byManager {
		fields := make([]string, 0, len(t.fields))
		for p := range t.fields {
			fields = append(fields, displayPath(p))
		}
		sort.Strings(fields)
		out = append(out, Takeover{Manager: manager, From: sortedKeys(t.from), Fields: slices.Compact(fields)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Manager < out[j].Manager })
	return out
}

// pathSep joins the raw fieldsV1 keys of one path ("f:metadata",
// "f:annotations", "f:example.com/owner"); it appears in none of them.
const pathSep = "\x00"

// ownership maps every field path owned in entries to the names of the
// managers that own it.
func ownership(entries []metav1.ManagedFieldsEntry) map[string]map[string]bool {
	owners := map[string]map[string]bool{}
	for _, e := range entries {
		if e.FieldsV1 == nil || e.Manager == "" {
			continue
		}
		_ = flatten(e.FieldsV1.Raw, "", func(path string) {
			if owners[path] == nil {
				owners[path] = map[string]bool{}
			}
			owners[path][e.Manager] = true
		})
	}
	return owners
}

// flatten calls owned for every path a fieldsV1 document owns: each leaf
// ({}) and each node marked with ".".
func flatten(raw []byte, prefix string, owned func(path string)) error {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return fmt.Errorf("reading fieldsV1: %w", err)
	}
	if len(m) == 0 {
		if prefix != "" {
			owned(prefix)
		}
		return nil
	}
	for k, v := range m {
		if k == "." {
			if prefix != "" {
				owned(prefix)
			}
			continue
		}
		p := k
		if prefix != "" {
			p = prefix + pathSep + k
		}
		if err := flatten(v, p, owned); err != nil {
			return err
		}
	}
	return nil
}

// writers returns the names of the managers whose entry is new in cur or
// has a newer time than in old: the API server stamps the time of the
// entry of the manager whose write changed the object.
func writers(old, cur []metav1.ManagedFieldsEntry) []string {
	type id struct{ manager, operation, apiVersion, subresource string }
	was := map[id]*metav1.Time{}
	for _, e := range old {
		was[id{e.Manager, string(e.Operation), e.APIVersion, e.Subresource}] = e.Time
	}
	names := map[string]bool{}
	for _, e := range cur {
		t, ok := was[id{e.Manager, string(e.Operation), e.APIVersion, e.Subresource}]
		if !ok || (e.Time != nil && (t == nil || e.Time.After(t.Time))) {
			names[e.Manager] = true
		}
	}
	return sortedKeys(names)
}

// mapFields are a Service's fields whose children are map keys, which
// fieldsV1 writes like struct fields ("f:example.com/owner").
var mapFields = map[string]bool{"metadata.annotations": true, "metadata.labels": true, "spec.selector": true}

// displayPath turns a path of raw fieldsV1 keys into a field path:
// f:metadata,f:annotations,f:a → metadata.annotations[a];
// f:status,f:loadBalancer,f:ingress → status.loadBalancer.ingress;
// f:spec,f:ports,k:{"port":80,"protocol":"TCP"} → spec.ports[port=80,protocol=TCP].
func displayPath(path string) string {
	var p *field.Path
	for _, el := range strings.Split(path, pathSep) {
		kind, val, ok := strings.Cut(el, ":")
		if !ok {
			kind, val = "f", el
		}
		if p == nil && kind != "f" {
			p = field.NewPath("")
		}
		switch kind {
		case "f":
			switch {
			case p == nil:
				p = field.NewPath(val)
			case mapFields[p.String()] || strings.ContainsAny(val, "./"):
				p = p.Key(val)
			default:
				p = p.Child(val)
			}
		case "k":
			p = p.Key(keyFields(val))
		case "v":
			p = p.Key(jsonText(json.RawMessage(val)))
		case "i":
			if n, err := strconv.Atoi(val); err == nil {
				p = p.Index(n)
			} else {
				p = p.Key(val)
			}
		default:
			p = p.Key(el)
		}
	}
	if p == nil {
		return ""
	}
	return p.String()
}

// keyFields renders the key of a list item, {"port":80,"protocol":"TCP"},
// as port=80,protocol=TCP.
func keyFields(raw string) string {
	var m map[string]json.RawMessage
	if err := json.Unmarshal([]byte(raw), &m); err != nil {
		return raw
	}
	parts := make([]string, 0, len(m))
	for _, k := range sortedKeys(m) {
		parts = append(parts, k+"="+jsonText(m[k]))
	}
	return strings.Join(parts, ",")
}

// jsonText renders a JSON scalar without the quotes of a string.
func jsonText(raw json.RawMessage) string {
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return s
	}
	return string(raw)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
