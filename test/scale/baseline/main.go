// Command baseline is the reference point of the scale benchmark: a plain
// controller-runtime cache with one full Pod informer (no transform, no
// extra index), as most controllers that read pods run it. It syncs the
// informer, prints "synced" and the number of cached pods, and waits for
// SIGTERM, so that the benchmark measures its memory the same way it
// measures `netguard serve`.
//
// With -list it is the reference point of `netguard audit` instead: a
// command-line tool that lists every pod as kubectl does (pages of 500,
// protobuf), keeps them all, prints "listed" and their number, and exits.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
)

func main() {
	kubeconfig := flag.String("kubeconfig", "", "kubeconfig of the API server")
	listOnce := flag.Bool("list", false, "list every pod once, keep them, print their number and exit")
	flag.Parse()
	mode := run
	if *listOnce {
		mode = list
	}
	if err := mode(*kubeconfig); err != nil {
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

func list(kubeconfig string) error {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return err
	}
	cfg.QPS, cfg.Burst = 50, 100
	cfg.ContentType = runtime.ContentTypeProtobuf
	cfg.AcceptContentTypes = runtime.ContentTypeProtobuf + "," + runtime.ContentTypeJSON
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	var pods []corev1.Pod
	opts := metav1.ListOptions{Limit: 500}
	for {
		page, err := cs.CoreV1().Pods("").List(context.Background(), opts)
		if err != nil {
			return err
		}
		pods = append(pods, page.Items...)
		if opts.Continue = page.Continue; opts.Continue == "" {
			break
		}
	}
	fmt.Printf("listed %d\n", len(pods))
	return nil
}
