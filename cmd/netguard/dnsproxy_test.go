package main

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"

	"github.com/netguard-io/netguard/config"
	"github.com/netguard-io/netguard/dnsproxy"
)

func TestDNSProxyFlags(t *testing.T) {
	resolvConf := filepath.Join(t.TempDir(), "resolv.conf")
	if err := os.WriteFile(resolvConf, []byte("nameserver 10.96.0.10\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := map[string]struct {
		args    []string
		want    dnsproxy.Config
		wantErr string
	}{
		"defaults read resolv.conf": {
			args: []string{"--resolv-conf", resolvConf},
			want: dnsproxy.Config{
				Listen:              "127.0.0.1:8053",
				Upstreams:           []netip.AddrPort{netip.MustParseAddrPort("10.96.0.10:53")},
				Timeout:             2 * time.Second,
				Deadline:            4 * time.Second,
				HedgeDelayMin:       10 * time.Millisecond,
				HedgeDelayMax:       500 * time.Millisecond,
				MaxParallelAttempts: 16,
				HedgeBudget:         4,
				MaxInFlight:         1024,
				WarmPortAge:         time.Second,
				Listeners:           1,
				MetricsAddr:         "127.0.0.1:9153",
			},
		},
		"every flag": {
			args: []string{
				"--listen", "127.0.0.1:53", "--upstream", "10.96.0.10,[fd00::10]:5353",
				"--timeout", "500ms", "--deadline", "3s", "--max-in-flight", "64",
				"--hedge-delay-min", "5ms", "--hedge-delay-max", "250ms", "--max-parallel-attempts", "4", "--hedge-budget", "2.5",
				"--cache-size", "100", "--listeners", "2", "--metrics-bind-address", ":9154", "--warm-port-age", "0",
				"--config", "ignored.yaml", "--zap-log-level", "debug",
			},
			want: dnsproxy.Config{
				Listen:              "127.0.0.1:53",
				Upstreams:           []netip.AddrPort{netip.MustParseAddrPort("10.96.0.10:53"), netip.MustParseAddrPort("[fd00::10]:5353")},
				Timeout:             500 * time.Millisecond,
				Deadline:            3 * time.Second,
				HedgeDelayMin:       5 * time.Millisecond,
				HedgeDelayMax:       250 * time.Millisecond,
				MaxParallelAttempts: 4,
				HedgeBudget:         2.5,
				MaxInFlight:         64,
				WarmPortAge:         -1,
				CacheSize:           100,
				Listeners:           2,
				MetricsAddr:         ":9154",
			},
		},
		"metrics disabled with 0": {
			args: []string{"--upstream", "192.0.2.53", "--metrics-bind-address", "0"},
			want: dnsproxy.Config{
				Listen:              "127.0.0.1:8053",
				Upstreams:           []netip.AddrPort{netip.MustParseAddrPort("192.0.2.53:53")},
				Timeout:             2 * time.Second,
				Deadline:            4 * time.Second,
				HedgeDelayMin:       10 * time.Millisecond,
				HedgeDelayMax:       500 * time.Millisecond,
				MaxParallelAttempts: 16,
				HedgeBudget:         4,
				MaxInFlight:         1024,
				WarmPortAge:         time.Second,
				Listeners:           1,
			},
		},
		"bad upstream":           {args: []string{"--upstream", "kube-dns"}, wantErr: "--upstream"},
		"missing resolv.conf":    {args: []string{"--resolv-conf", filepath.Join(t.TempDir(), "none")}, wantErr: "no such file"},
		"zero max in flight":     {args: []string{"--upstream", "192.0.2.53", "--max-in-flight", "0"}, wantErr: "--max-in-flight"},
		"positional args":        {args: []string{"--upstream", "192.0.2.53", "extra"}, wantErr: "unknown command"},
		"zero listeners":         {args: []string{"--upstream", "192.0.2.53", "--listeners", "0"}, wantErr: "--listeners"},
		"non-positive timeout":   {args: []string{"--upstream", "192.0.2.53", "--timeout", "0s"}, wantErr: "--timeout"},
		"zero hedge delay":       {args: []string{"--upstream", "192.0.2.53", "--hedge-delay-min", "0s"}, wantErr: "--hedge-delay-min"},
		"zero parallel attempts": {args: []string{"--upstream", "192.0.2.53", "--max-parallel-attempts", "0"}, wantErr: "--max-parallel-attempts"},
		"negative hedge budget":  {args: []string{"--upstream", "192.0.2.53", "--hedge-budget", "-1"}, wantErr: "--hedge-budget"},
		"negative warm port age": {args: []string{"--upstream", "192.0.2.53", "--warm-port-age", "-1s"}, wantErr: "--warm-port-age"},
		"unknown flag is caught": {args: []string{"--upstreams", "192.0.2.53"}, wantErr: "unknown flag"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			var got *dnsproxy.Config
			cmd := dnsProxyCommand(func(_ context.Context, cfg dnsproxy.Config, _ logr.Logger) error {
				got = &cfg
				return nil
			})
			cmd.PersistentFlags().String("config", "", "stands in for the root's flag")
			cmd.SetArgs(tc.args)
			cmd.SetOut(new(strings.Builder))
			cmd.SetErr(new(strings.Builder))
			err := cmd.Execute()
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one mentioning %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got == nil {
				t.Fatal("run was not called")
			}
			if !reflect.DeepEqual(*got, tc.want) {
				t.Fatalf("config\n got %+v\nwant %+v", *got, tc.want)
			}
		})
	}
}

func TestDNSProxyHelpNamesDefaults(t *testing.T) {
	cmd := newDNSProxyCommand()
	for _, name := range []string{"listen", "upstream", "resolv-conf", "timeout", "deadline", "hedge-delay-min", "hedge-delay-max",
		"max-parallel-attempts", "hedge-budget", "max-in-flight", "cache-size", "listeners", "metrics-bind-address"} {
		f := cmd.Flags().Lookup(name)
		if f == nil {
			t.Errorf("no --%s flag", name)
			continue
		}
		if f.DefValue == "0" && !strings.Contains(f.Usage, "0") {
			t.Errorf("--%s defaults to 0 but its help does not say what 0 means", name)
		}
	}
}

// TestSidecarAttemptFlags: the webhook renders only the attempt settings
// that differ from config's defaults, so those must be the forwarder's own,
// and what it renders must parse into the configured policy.
func TestSidecarAttemptFlags(t *testing.T) {
	parse := func(s string) time.Duration {
		d, err := time.ParseDuration(s)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	def := config.DefaultDNSProxyAttempts()
	if parse(def.Timeout) != dnsproxy.DefaultTimeout || parse(def.Deadline) != dnsproxy.DefaultDeadline ||
		parse(def.HedgeDelayMin) != dnsproxy.DefaultHedgeDelayMin || parse(def.HedgeDelayMax) != dnsproxy.DefaultHedgeDelayMax ||
		def.MaxParallel != dnsproxy.DefaultMaxParallelAttempts || def.HedgeBudget != dnsproxy.DefaultHedgeBudget {
		t.Fatalf("config's attempt defaults %+v differ from the forwarder's", def)
	}
	tuned := config.DNSProxyAttempts{Timeout: "1s", Deadline: "3s", HedgeDelayMin: "5ms", HedgeDelayMax: "1.5s", MaxParallel: 8, HedgeBudget: 2.5}
	var got dnsproxy.Config
	cmd := dnsProxyCommand(func(_ context.Context, cfg dnsproxy.Config, _ logr.Logger) error {
		got = cfg
		return nil
	})
	cmd.SetArgs(append([]string{"--upstream", "192.0.2.53"}, tuned.Flags()...))
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	if got.Timeout != time.Second || got.Deadline != 3*time.Second || got.HedgeDelayMin != 5*time.Millisecond ||
		got.HedgeDelayMax != 1500*time.Millisecond || got.MaxParallelAttempts != 8 || got.HedgeBudget != 2.5 {
		t.Errorf("flags %q gave %+v", tuned.Flags(), got)
	}
}
