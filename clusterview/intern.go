package clusterview

import (
	"runtime"
	"sync"
	"unique"
	"weak"
)

// intern returns the canonical copy of s, so that strings shared by many
// cached objects (namespaces, label keys and values, owner names) are
// stored once.
func intern(s string) string { return unique.Make(s).Value() }

// interner hands out one shared, immutable *T per key, for as long as
// anything holds it: entries are weak, and an entry whose value the
// collector freed is removed. It is safe for concurrent use; the values it
// returns must never be modified.
type interner[T any] struct {
	mu sync.Mutex
	m  map[string]weak.Pointer[T]
}

// get returns the value for key, made by newValue if there is none.
func (in *interner[T]) get(key string, newValue func() *T) *T {
	in.mu.Lock()
	defer in.mu.Unlock()
	if wp, ok := in.m[key]; ok {
		if v := wp.Value(); v != nil {
			return v
		}
	}
	if in.m == nil {
		in.m = map[string]weak.Pointer[T]{}
	}
	v := newValue()
	wp := weak.Make(v)
	in.m[key] = wp
	runtime.AddCleanup(v, in.drop, cleanupKey[T]{key, wp})
	return v
}

type cleanupKey[T any] struct {
	key string
	wp  weak.Pointer[T]
}

// drop removes key once its value is gone, unless a new value took its
// place meanwhile.
func (in *interner[T]) drop(k cleanupKey[T]) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.m[k.key] == k.wp {
		delete(in.m, k.key)
	}
}

// len returns the number of entries, for tests.
func (in *interner[T]) len() int {
	in.mu.Lock()
	defer in.mu.Unlock()
	return len(in.m)
}
