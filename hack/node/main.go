// Command node starts and stops a real single-node Kubernetes cluster on
// this machine with netguard installed from its Helm chart (package
// test/node). `make node-up` and `make node-down` run it.
//
//	node up -assets DIR -cert-manager DIR -helm PATH -netguard BIN -version V
//	node down
//
// up prints progress to stderr and, as the last line of its standard
// output, the path of an admin kubeconfig for kubectl.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/netguard-io/netguard/internal/testlog"
	"github.com/netguard-io/netguard/test/node"
)

func main() {
	testlog.Discard()
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "up":
		err = up(os.Args[2:])
	case "down":
		err = node.Down()
		if err == nil {
			fmt.Fprintln(os.Stderr, "node: down; nothing left behind")
		}
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "node:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: node up -assets DIR -cert-manager DIR -helm PATH -netguard BIN -version V | node down")
	os.Exit(2)
}

func up(args []string) error {
	fs := flag.NewFlagSet("up", flag.ExitOnError)
	var opts node.Options
	fs.StringVar(&opts.Assets, "assets", "", "directory with the Kubernetes binaries and CoreDNS (hack/node-assets.sh)")
	fs.StringVar(&opts.CertManager, "cert-manager", "", "directory with cert-manager's controller, cainjector and CRDs (hack/cert-manager.sh)")
	fs.StringVar(&opts.Helm, "helm", "helm", "helm binary")
	fs.StringVar(&opts.Netguard, "netguard", "bin/netguard", "static netguard binary for the image")
	fs.StringVar(&opts.Version, "version", "devel", "netguard's version: the image tag")
	fs.BoolVar(&opts.KeepOnFailure, "keep-on-failure", false, "leave a node that failed to start as it is, for a look at "+node.BaseDir+"/logs")
	_ = fs.Parse(args)
	opts.Progress = func(s string) { fmt.Fprintln(os.Stderr, "node: starting", s) }
	// Ctrl-C while starting takes down what was started; a reader that
	// goes away (| head) must not stop it half way.
	signal.Ignore(syscall.SIGPIPE)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	c, err := node.Up(ctx, opts)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "node: up; netguard %s runs in namespace %s. Try:\n  kubectl --kubeconfig %s get pods -A\n  make node-down   # when done\n",
		c.NetguardImage, node.NetguardNamespace, c.Kubeconfig)
	fmt.Println(c.Kubeconfig)
	return nil
}
