package dnsproxy

import (
	"container/list"
	"encoding/binary"
	"sync"
	"time"
)

// The cache is off by default (see Config.CacheSize). When on, it keeps
// whole upstream replies, with the offsets of their TTL fields, and serves
// a copy whose TTLs are lowered by the time spent in the cache, so a client
// never holds an answer longer than the authoritative TTL allowed.

const (
	// maxCacheTTL caps how long a positive answer is kept.
	maxCacheTTL = time.Hour
	// maxNegativeTTL caps negative answers (RFC 2308 5 suggests 1-3 hours;
	// a sidecar that exists for freshness keeps them much shorter).
	maxNegativeTTL = 5 * time.Minute
	// maxCachedReply keeps the cache's memory bounded by CacheSize × 4 KiB.
	maxCachedReply = smallBuf
	// keyLen fits a question (name up to 255 bytes, type, class) and a flag byte.
	keyLen = maxName + 5
)

// cache is a bounded LRU of replies keyed by question and the flags that
// change the answer.
type cache struct {
	mu      sync.Mutex
	max     int
	entries map[string]*list.Element
	lru     list.List // front is most recently used; values are *cacheEntry
	now     func() time.Time
}

type cacheEntry struct {
	key     string
	reply   []byte
	ttlOffs []int
	stored  time.Time
	expires time.Time
}

func newCache(size int) *cache {
	return &cache{max: size, entries: make(map[string]*list.Element, size), now: time.Now}
}

// cacheKey writes the key of the query msg into dst: the question with the
// name lowered, then the RD, CD, DO and has-EDNS0 bits, which select
// different answers (or, for EDNS0, a different reply format).
func cacheKey(dst *[keyLen]byte, msg []byte, q *query) []byte {
	n := copy(dst[:], msg[headerLen:q.qEnd])
	for i := range n - 4 {
		dst[i] = lower(dst[i])
	}
	var f byte
	if q.flags&flagRD != 0 {
		f |= 1
	}
	if q.flags&flagCD != 0 {
		f |= 2
	}
	if q.do {
		f |= 4
	}
	if q.hasOPT {
		f |= 8
	}
	dst[n] = f
	return dst[:n+1]
}

// get copies the cached reply for key into dst with the TTLs aged, and
// returns its length, or 0 when there is none, it has expired, or it does
// not fit in maxSize.
func (c *cache) get(key []byte, dst []byte, maxSize int) int {
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.entries[string(key)]
	if !ok {
		return 0
	}
	e := el.Value.(*cacheEntry)
	if !now.Before(e.expires) {
		c.lru.Remove(el)
		delete(c.entries, e.key)
		return 0
	}
	if len(e.reply) > maxSize || len(e.reply) > len(dst) {
		return 0
	}
	c.lru.MoveToFront(el)
	n := copy(dst, e.reply)
	age := uint32(now.Sub(e.stored) / time.Second)
	for _, off := range e.ttlOffs {
		ttl := binary.BigEndian.Uint32(dst[off:])
		binary.BigEndian.PutUint32(dst[off:], ttl-min(ttl, age))
	}
	return n
}

// put stores reply under key if it may be cached: NOERROR with answers for
// the smallest TTL among its records, or a negative answer (NXDOMAIN or
// NODATA) for the SOA's TTL capped by its MINIMUM field (RFC 2308 5). Other
// rcodes, truncated replies, and negative answers without an SOA are not
// cached.
func (c *cache) put(key, reply []byte) {
	if len(reply) > maxCachedReply || len(reply) < headerLen {
		return
	}
	flags := binary.BigEndian.Uint16(reply[2:])
	if flags&flagTC != 0 {
		return
	}
	rcode := flags & rcodeMask
	if rcode != rcodeSuccess && rcode != rcodeNXDomain {
		return
	}
	qd := int(binary.BigEndian.Uint16(reply[4:]))
	an := int(binary.BigEndian.Uint16(reply[6:]))
	ns := int(binary.BigEndian.Uint16(reply[8:]))
	ar := int(binary.BigEndian.Uint16(reply[10:]))
	if qd != 1 {
		return
	}
	off, ok := questionEnd(reply)
	if !ok {
		return
	}
	negative := rcode == rcodeNXDomain || an == 0
	var (
		ttlOffs  []int
		minTTL   = ^uint32(0)
		soaFound bool
	)
	for i := 0; i < an+ns+ar; i++ {
		r, next, ok := nextRecord(reply, off)
		if !ok {
			return
		}
		off = next
		if r.typ == typeOPT {
			continue // its TTL field holds EDNS0 flags
		}
		ttlOffs = append(ttlOffs, r.ttlOff)
		ttl := binary.BigEndian.Uint32(reply[r.ttlOff:])
		if negative {
			if i >= an && i < an+ns && r.typ == typeSOA && r.rdLen >= 20 {
				soaMin := binary.BigEndian.Uint32(reply[r.rdOff+r.rdLen-4:])
				minTTL = min(minTTL, ttl, soaMin)
				soaFound = true
			}
			continue
		}
		minTTL = min(minTTL, ttl)
	}
	if off != len(reply) || (negative && !soaFound) || minTTL == 0 || minTTL == ^uint32(0) {
		return
	}
	life := time.Duration(minTTL) * time.Second
	if negative {
		life = min(life, maxNegativeTTL)
	} else {
		life = min(life, maxCacheTTL)
	}
	now := c.now()
	e := &cacheEntry{
		key:     string(key),
		reply:   append([]byte(nil), reply...),
		ttlOffs: ttlOffs,
		stored:  now,
		expires: now.Add(life),
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.entries[e.key]; ok {
		el.Value = e
		c.lru.MoveToFront(el)
		return
	}
	if c.lru.Len() >= c.max {
		oldest := c.lru.Back()
		c.lru.Remove(oldest)
		delete(c.entries, oldest.Value.(*cacheEntry).key)
	}
	c.entries[e.key] = c.lru.PushFront(e)
}

// len returns the number of entries, expired ones included.
func (c *cache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Len()
}
