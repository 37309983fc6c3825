package dnsproxy

import "sync"

// Buffers come from two pools: small ones for queries and replies to
// clients without EDNS0 or with a common payload size, large ones for
// replies up to the DNS maximum (TCP, large EDNS0 sizes). Memory in use is
// bounded by MaxInFlight times two buffers.
const (
	smallBuf = 4096
	largeBuf = 65536
)

var (
	smallPool = sync.Pool{New: func() any { b := make([]byte, smallBuf); return &b }}
	largePool = sync.Pool{New: func() any { b := make([]byte, largeBuf); return &b }}
)

// getBuf returns a pooled buffer of at least n bytes (n <= largeBuf).
func getBuf(n int) *[]byte {
	if n <= smallBuf {
		return smallPool.Get().(*[]byte)
	}
	return largePool.Get().(*[]byte)
}

// putBuf returns a buffer from getBuf to its pool.
func putBuf(b *[]byte) {
	switch cap(*b) {
	case smallBuf:
		*b = (*b)[:smallBuf]
		smallPool.Put(b)
	case largeBuf:
		*b = (*b)[:largeBuf]
		largePool.Put(b)
	}
}
