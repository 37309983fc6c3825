// Command baseline is the reference point of the scale benchmark: a plain
// controller-runtime cache with one full Pod informer (no transform, no
// extra index), as most controllers that read pods run it. It syncs the
// informer, prints "synced" and the number of cached pods, and waits for
// SIGTERM, so that the benchmark measures its memory the same way it
// measures `netguard serve`.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	corev1 "k8s.io/api/core/v1"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
)

func main() {
	kubeconfig := flag.String("kubeconfig", "", "kubeconfig of the API server")
	flag.Parse()
	if err := run(*kubeconfig); err != nil {
		fmt.Fprintln(os.Stderr, "baseline:", err)
		os.Exit(1)
	}
}

func run(kubeconfig string) error {
	log.SetLogger(zap.New())
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	c, err := cache.New(cfg, cache.Options{Scheme: clientgoscheme.Scheme})
	if err != nil {
		return err
	}
	inf, err := c.GetInformer(ctx, &corev1.Pod{}, cache.BlockUntilSynced(false))
	if err != nil {
		return err
	}
	store, ok := inf.(interface{ GetIndexer() toolscache.Indexer })
	if !ok {
		return fmt.Errorf("the Pod informer has no indexer")
	}
	errc := make(chan error, 1)
	go func() { errc <- c.Start(ctx) }()
	if !c.WaitForCacheSync(ctx) {
		return fmt.Errorf("the Pod informer did not sync: %w", <-errc)
	}
	// Counted from the store's keys: a List through the cache would deep
	// copy every pod.
	fmt.Printf("synced %d\n", len(store.GetIndexer().ListKeys()))
	<-ctx.Done()
	return <-errc
}
