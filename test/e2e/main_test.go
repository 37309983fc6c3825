package e2e

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

// buildDir holds what the tests build once for all of them.
var buildDir string

// testBinary is this test binary, which also serves as a DNS server that
// answers every query with one error rcode (see rcodeServerEnv).
var testBinary string

// rcodeServerEnv, set to ADDR,RCODE, makes the test binary a DNS server on
// UDP ADDR answering every query at once with RCODE.
const rcodeServerEnv = "NETGUARD_E2E_RCODE_SERVER"

func TestMain(m *testing.M) {
	if spec := os.Getenv(rcodeServerEnv); spec != "" {
		os.Exit(serveRcode(spec))
	}
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	testBinary = exe
	dir, err := os.MkdirTemp("", "netguard-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	buildDir = dir
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// serveRcode answers every UDP query on addr with rcode, until killed.
func serveRcode(spec string) int {
	addr, code, _ := strings.Cut(spec, ",")
	rcode, err := strconv.Atoi(code)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s=%q: %v\n", rcodeServerEnv, spec, err)
		return 2
	}
	srv := &dns.Server{Addr: addr, Net: "udp", Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetRcode(r, rcode)
		_ = w.WriteMsg(m)
	})}
	if err := srv.ListenAndServe(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}
