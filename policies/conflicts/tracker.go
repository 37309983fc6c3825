package conflicts

import (
	"container/list"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
)

// Settings of a Tracker.
type Settings struct {
	// Flips is how many takeovers within Window make a conflict (at least 2).
	Flips int
	// Window is how far back takeovers count. A conflict ends when no
	// takeover has been seen for a whole window, and so does the tracking
	// of a Service.
	Window time.Duration
	// MaxTracked bounds the Services tracked; past it the one whose last
	// takeover is oldest is forgotten.
	MaxTracked int
}

// maxNames bounds the managers and fields remembered per Service: a fight
// has two or three managers and a handful of fields, and the report only
// needs to name them.
const maxNames = 8

// Conflict is two or more field managers fighting over one Service.
type Conflict struct {
	// Service is the Service fought over.
	Service types.NamespacedName
	// Managers are the field managers taking fields from each other within
	// the window, sorted.
	Managers []string
	// Fields are the fields they took within the window, sorted.
	Fields []string
	// Takeovers counts the takeovers seen since the tracking of the Service
	// began.
	Takeovers int
	// Since is when the first of those takeovers was seen.
	Since time.Time
	// Window is the window of the settings.
	Window time.Duration
}

// Message says what is happening in one sentence, for Events, logs and
// admission warnings.
func (c Conflict) Message() string {
	return fmt.Sprintf("field managers %s keep taking fields of Service %s from each other (%s): %d takeovers since %s",
		joinNames(c.Managers), c.Service, joinNames(c.Fields), c.Takeovers, c.Since.UTC().Format(time.RFC3339))
}

// joinNames lists names as "a, b and c", at most five of them.
func joinNames(names []string) string {
	const show = 5
	shown := names
	more := 0
	if len(names) > show {
		shown, more = names[:show], len(names)-show
	}
	switch {
	case len(shown) == 0:
		return "(none)"
	case more > 0:
		return fmt.Sprintf("%s and %d more", strings.Join(shown, ", "), more)
	case len(shown) == 1:
		return shown[0]
	}
	return strings.Join(shown[:len(shown)-1], ", ") + " and " + shown[len(shown)-1]
}

// Outcome is what one observation changed.
type Outcome struct {
	// InConflict reports whether the Service is in conflict now; Conflict
	// describes it.
	InConflict bool
	// Conflict is the current conflict, when InConflict.
	Conflict Conflict
	// Started reports whether this observation started the conflict.
	Started bool
	// Report says the conflict is due to be reported: when it starts, then
	// at most once per window while it lasts, so a long fight stays visible
	// without an Event per write.
	Report bool
	// Ended are conflicts that ended during this observation: this
	// Service's previous conflict, if no takeover had been seen for a
	// window, or other Services' conflicts forgotten to stay within
	// MaxTracked.
	Ended []Ended
}

// Ended is a conflict that is over or no longer tracked.
type Ended struct {
	Conflict
	// Evicted means the Service was forgotten to stay within MaxTracked,
	// not that the fight stopped.
	Evicted bool
}

// Tracker counts takeovers per Service within a sliding window and says
// when they make a conflict. Only Services with a takeover within the
// window are tracked, and at most MaxTracked of them. It is safe for
// concurrent use.
type Tracker struct {
	settings Settings
	clock    clock.PassiveClock

	mu         sync.Mutex
	entries    map[types.NamespacedName]*entry
	lru        *list.List // of *entry, least recent takeover first
	inConflict int
}

// entry is one tracked Service.
type entry struct {
	key types.NamespacedName
	// flips holds the times of the last Settings.Flips takeovers, oldest
	// first.
	flips    []time.Time
	total    int
	first    time.Time
	managers map[string]time.Time // last seen in a takeover
	fields   map[string]time.Time
	conflict bool
	reported time.Time
	elem     *list.Element
}

// NewTracker returns a Tracker with settings s, reading time from clk.
// Flips below 2 count as 2 and MaxTracked below 1 as 1.
func NewTracker(s Settings, clk clock.PassiveClock) *Tracker {
	s.Flips = max(s.Flips, 2)
	s.MaxTracked = max(s.MaxTracked, 1)
	return &Tracker{settings: s, clock: clk, entries: map[types.NamespacedName]*entry{}, lru: list.New()}
}

// Observe records the takeovers seen in one change of Service key.
func (t *Tracker) Observe(key types.NamespacedName, takeovers []Takeover) Outcome {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.clock.Now()
	var out Outcome
	e := t.entries[key]
	if e != nil && t.stale(e, now) {
		if c, ok := t.removeLocked(e); ok {
			out.Ended = append(out.Ended, Ended{Conflict: c})
		}
		e = nil
	}
	if len(takeovers) == 0 {
		if e != nil && e.conflict {
			out.InConflict, out.Conflict = true, t.conflictOf(e)
		}
		return out
	}
	if e == nil {
		e = &entry{key: key, first: now, managers: map[string]time.Time{}, fields: map[string]time.Time{}}
		e.elem = t.lru.PushBack(e)
		t.entries[key] = e
	} else {
		t.lru.MoveToBack(e.elem)
	}
	for _, to := range takeovers {
		e.total++
		e.flips = append(e.flips, now)
		if len(e.flips) > t.settings.Flips {
			e.flips = e.flips[1:]
		}
		e.managers[to.Manager] = now
		for _, m := range to.From {
			e.managers[m] = now
		}
		for _, f := range to.Fields {
			e.fields[f] = now
		}
	}
	prune(e.managers, now.Add(-t.settings.Window), maxNames)
	prune(e.fields, now.Add(-t.settings.Window), maxNames)

	if !e.conflict && len(e.flips) >= t.settings.Flips && now.Sub(e.flips[0]) <= t.settings.Window && len(e.managers) >= 2 {
		e.conflict = true
		t.inConflict++
		out.Started = true
	}
	if e.conflict {
		out.InConflict, out.Conflict = true, t.conflictOf(e)
		if out.Started || now.Sub(e.reported) >= t.settings.Window {
			out.Report = true
			e.reported = now
		}
	}
	for t.lru.Len() > t.settings.MaxTracked {
		oldest := t.lru.Front().Value.(*entry)
		if c, ok := t.removeLocked(oldest); ok {
			out.Ended = append(out.Ended, Ended{Conflict: c, Evicted: true})
		}
	}
	return out
}

// Conflict returns the conflict Service key is in, if it is in one now.
func (t *Tracker) Conflict(key types.NamespacedName) (Conflict, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.entries[key]
	if e == nil || !e.conflict || t.stale(e, t.clock.Now()) {
		return Conflict{}, false
	}
	return t.conflictOf(e), true
}

// Expire forgets the Services with no takeover for a whole window and
// returns the conflicts that thereby ended.
func (t *Tracker) Expire() []Ended {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.clock.Now()
	var ended []Ended
	for el := t.lru.Front(); el != nil; {
		e := el.Value.(*entry)
		if !t.stale(e, now) {
			break // the list is ordered by last takeover
		}
		el = el.Next()
		if c, ok := t.removeLocked(e); ok {
			ended = append(ended, Ended{Conflict: c})
		}
	}
	return ended
}

// Forget stops tracking Service key (it was deleted) and returns its
// conflict, if it was in one.
func (t *Tracker) Forget(key types.NamespacedName) (Conflict, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.entries[key]
	if e == nil {
		return Conflict{}, false
	}
	return t.removeLocked(e)
}

// Len is the number of Services tracked.
func (t *Tracker) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.entries)
}

// InConflict is the number of tracked Services in conflict. A conflict
// that has run out its window counts until Expire or Observe removes it.
func (t *Tracker) InConflict() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.inConflict
}

// stale reports whether e's last takeover is a whole window old.
func (t *Tracker) stale(e *entry, now time.Time) bool {
	return now.Sub(e.flips[len(e.flips)-1]) >= t.settings.Window
}

func (t *Tracker) removeLocked(e *entry) (Conflict, bool) {
	t.lru.Remove(e.elem)
	delete(t.entries, e.key)
	if !e.conflict {
		return Conflict{}, false
	}
	t.inConflict--
	return t.conflictOf(e), true
}

func (t *Tracker) conflictOf(e *entry) Conflict {
	return Conflict{
		Service:   e.key,
		Managers:  sortedKeys(e.managers),
		Fields:    sortedKeys(e.fields),
		Takeovers: e.total,
		Since:     e.first,
		Window:    t.settings.Window,
	}
}

// prune drops the names last seen at or before cutoff, then the oldest ones
// beyond limit.
func prune(names map[string]time.Time, cutoff time.Time, limit int) {
	for n, seen := range names {
		if !seen.After(cutoff) {
			delete(names, n)
		}
	}
	if len(names) <= limit {
		return
	}
	byAge := sortedKeys(names)
	sort.SliceStable(byAge, func(i, j int) bool { return names[byAge[i]].Before(names[byAge[j]]) })
	for _, n := range byAge[:len(byAge)-limit] {
		delete(names, n)
	}
}
