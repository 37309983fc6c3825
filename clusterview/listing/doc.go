// Package listing keeps an informer's initial list from holding every
// object of a resource in memory at once.
//
// An informer fills its cache with a streaming list (WatchList) where the
// API server supports it: objects arrive one by one and each is
// transformed (made lean) as it arrives. Where it does not (the
// WatchList feature is off, or etcd lacks the progress notifications it
// needs, as etcd before 3.4.31/3.5.13 does), client-go falls back to a LIST
// with resourceVersion=0, which the API server answers from its watch
// cache in one response whatever the page size, and decodes the whole
// list, every object in full, before the first one is transformed. For
// 150,000 pods that is a response of hundreds of MiB and a decoded list
// of more than a GiB: the peak, not the cache, sizes the process.
//
// NewInformer's informers list in pages instead (limit 500, most recent
// data, as kubectl does) and transform each page as it arrives, so at
// most one page of full objects is in memory at a time.
//
// Layer: the cluster view, below the plumbing. It may import policies,
// config and internal; it needs none of them.
package listing
