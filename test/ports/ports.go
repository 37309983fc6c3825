// Package ports gives test control planes ports that nothing else takes.
//
// Ports for kube-apiserver and etcd are picked from below the kernel's
// ephemeral range (ip_local_port_range, 32768-60999 by default). The kernel
// never hands these out on its own, not for bind(":0") nor as the source
// port of an outgoing connection, so a port chosen here cannot be taken by
// another test's netguard or by one of the many short-lived connections of
// a parallel test run between being chosen and being bound. Test processes
// coordinate among themselves with an exclusive lock file per port, held
// until the control plane stops; a port someone else uses anyway makes the
// start fail, and StartEnvtest tries other ports.
package ports

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"syscall"

	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

const (
	PortMin = 20000
	PortMax = 32767
)

// portLockDir holds one lock file per reserved port.
var portLockDir = filepath.Join(os.TempDir(), "netguard-test-ports")

// Port is a port held for this process until Release.
type Port struct {
	Port int
	lock *os.File
}

// reservePort locks a random port of the reserved range.
func Reserve() (*Port, error) {
	for range 100 {
		port := PortMin + rand.IntN(PortMax-PortMin+1)
		path := filepath.Join(portLockDir, strconv.Itoa(port))
		if err := os.MkdirAll(portLockDir, 0o755); err != nil {
			return nil, err
		}
		f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
		if errors.Is(err, os.ErrNotExist) {
			continue // the last holder removed the directory just now
		}
		if err != nil {
			return nil, err
		}
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			continue
		}
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("locking %s: %w", path, err)
		}
		if !samePath(f, path) { // released and removed while we opened it
			f.Close()
			continue
		}
		return &Port{Port: port, lock: f}, nil
	}
	return nil, errors.New("no free port in the reserved range after 100 tries")
}

// samePath reports whether path still names the open file f.
func samePath(f *os.File, path string) bool {
	open, err := f.Stat()
	if err != nil {
		return false
	}
	named, err := os.Stat(path)
	return err == nil && os.SameFile(open, named)
}

// Release gives the port back. The lock file, and the directory once it is
// empty, are removed while the lock is still held, so that nothing is left
// behind; a process that opened the file meanwhile sees it is gone and
// tries another port.
func (p *Port) Release() {
	if p == nil || p.lock == nil {
		return
	}
	os.Remove(p.lock.Name())
	os.Remove(portLockDir) // fails while other ports are held
	p.lock.Close()
	p.lock = nil
}

func releaseAll(ports []*Port) {
	for _, p := range ports {
		p.Release()
	}
}

// startAttempts bounds how often StartEnvtest tries new ports when a start
// fails (a reserved port that another program uses after all).
const startAttempts = 3

// StartEnvtest starts env's etcd and kube-apiserver on reserved ports and
// returns its config and a function that releases the ports once env has
// stopped. env must not set ports of its own; configureEtcd, if given, sets
// further etcd flags.
func StartEnvtest(env *envtest.Environment, configureEtcd ...func(*envtest.Etcd)) (*rest.Config, func(), error) {
	var errs []error
	for range startAttempts {
		held := make([]*Port, 3) // etcd clients, etcd peers, API server
		var err error
		for i := range held {
			if held[i], err = Reserve(); err != nil {
				releaseAll(held)
				return nil, nil, err
			}
		}
		addr := func(p *Port) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(p.Port)) }
		etcd := &envtest.Etcd{URL: &url.URL{Scheme: "http", Host: addr(held[0])}}
		etcd.Configure().Set("listen-peer-urls", "http://"+addr(held[1]))
		for _, configure := range configureEtcd {
			configure(etcd)
		}
		env.ControlPlane.Etcd = etcd
		env.ControlPlane.GetAPIServer().SecurePort = held[2].Port
		cfg, err := env.Start()
		if err == nil {
			return cfg, func() { releaseAll(held) }, nil
		}
		errs = append(errs, err)
		_ = env.Stop()
		releaseAll(held)
	}
	return nil, nil, errors.Join(errs...)
}
