package serving

import (
	"context"
	"fmt"
	"os"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	crrecorder "sigs.k8s.io/controller-runtime/pkg/recorder"
)

// LeaderElection configures the election of the replica that records
// Events. Zero durations take client-go's defaults (15s, 10s, 2s).
type LeaderElection struct {
	// Namespace and Name of the Lease.
	Namespace, Name string
	// LeaseDuration is how long a Lease holds without renewal: the longest
	// a replica waits to take over from one that stopped.
	LeaseDuration time.Duration
	// RenewDeadline is how long the leader tries to renew before it steps
	// down.
	RenewDeadline time.Duration
	// RetryPeriod is how often replicas try to take or renew the Lease.
	RetryPeriod time.Duration
}

// leader campaigns for the Lease for as long as the manager runs and
// reports whether this replica holds it. Unlike controller-runtime's own
// leader election, losing the Lease does not stop the process: every
// replica answers admission reviews whether it leads or not, and an API
// server that is away for a while must not take netguard's webhooks down
// with it. A replica that lost the Lease campaigns again.
type leader struct {
	cfg   LeaderElection
	lock  resourcelock.Interface
	leads atomic.Bool
	log   logr.Logger
}

var _ manager.LeaderElectionRunnable = (*leader)(nil)

func newLeader(client kubernetes.Interface, cfg LeaderElection, recorder crrecorder.EventRecorder) (*leader, error) {
	host, err := os.Hostname()
	if err != nil {
		return nil, fmt.Errorf("leader election: %w", err)
	}
	lock, err := resourcelock.New(resourcelock.LeasesResourceLock, cfg.Namespace, cfg.Name,
		client.CoreV1(), client.CoordinationV1(), resourcelock.ResourceLockConfig{
			Identity:      host + "_" + string(uuid.NewUUID()),
			EventRecorder: leaseEvents{recorder},
		})
	if err != nil {
		return nil, fmt.Errorf("leader election: %w", err)
	}
	return &leader{cfg: cfg, lock: lock}, nil
}

// Leads reports whether this replica holds the Lease now.
func (l *leader) Leads() bool { return l != nil && l.leads.Load() }

// NeedLeaderElection implements manager.LeaderElectionRunnable: the
// election runs on every replica.
func (*leader) NeedLeaderElection() bool { return false }

// Start campaigns until ctx ends, then gives the Lease up so that another
// replica takes over at once.
func (l *leader) Start(ctx context.Context) error {
	l.log = logf.FromContext(ctx).WithName("leader-election")
	or := func(d, def time.Duration) time.Duration {
		if d == 0 {
			return def
		}
		return d
	}
	for ctx.Err() == nil {
		le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
			Lock:            l.lock,
			LeaseDuration:   or(l.cfg.LeaseDuration, 15*time.Second),
			RenewDeadline:   or(l.cfg.RenewDeadline, 10*time.Second),
			RetryPeriod:     or(l.cfg.RetryPeriod, 2*time.Second),
			ReleaseOnCancel: true,
			Name:            l.cfg.Name,
			Callbacks: leaderelection.LeaderCallbacks{
				OnStartedLeading: func(context.Context) {
					l.leads.Store(true)
					l.log.Info("Leading: this replica records Events", "lease", l.cfg.Namespace+"/"+l.cfg.Name)
				},
				OnStoppedLeading: func() {
					if l.leads.Swap(false) && ctx.Err() == nil {
						l.log.Info("Lost the lease; admission goes on, Events are left to the new leader", "lease", l.cfg.Namespace+"/"+l.cfg.Name)
					}
				},
			},
		})
		if err != nil {
			return fmt.Errorf("leader election: %w", err)
		}
		le.Run(ctx) // returns when leadership is lost or ctx ends
	}
	return nil
}

// leaseEvents records the election's Events (a replica took the Lease)
// through the events.k8s.io recorder.
type leaseEvents struct{ crrecorder.EventRecorder }

func (e leaseEvents) Eventf(obj runtime.Object, eventType, reason, message string, args ...any) {
	e.EventRecorder.Eventf(obj, nil, eventType, reason, "LeaderElection", message, args...)
}
