package dnsproxy

import (
	"bufio"
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"strings"
)

// UpstreamsFromResolvConf is the --upstream value that reads the
// nameservers from the resolv.conf file instead of listing them.
const UpstreamsFromResolvConf = "resolv.conf"

// DefaultResolvConf is the file read when the upstreams come from resolv.conf.
const DefaultResolvConf = "/etc/resolv.conf"

// dnsPort is the port of an upstream given without one.
const dnsPort = 53

// ParseUpstreams turns an --upstream value into upstream addresses.
//
// spec is a comma-separated list of IP, IP:PORT or [IPv6]:PORT (a bare IP
// means port 53), or "resolv.conf" or empty, which read the nameserver
// lines of resolvConfPath (DefaultResolvConf when empty).
func ParseUpstreams(spec, resolvConfPath string) ([]netip.AddrPort, error) {
	spec = strings.TrimSpace(spec)
	if spec == "" || spec == UpstreamsFromResolvConf {
		if resolvConfPath == "" {
			resolvConfPath = DefaultResolvConf
		}
		data, err := os.ReadFile(resolvConfPath)
		if err != nil {
			return nil, fmt.Errorf("reading upstreams: %w", err)
		}
		ups, err := parseResolvConf(data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", resolvConfPath, err)
		}
		return ups, nil
	}
	var ups []netip.AddrPort
	for field := range strings.SplitSeq(spec, ",") {
		field = strings.TrimSpace(field)
		if field == "" {
			continue
		}
		up, err := parseUpstream(field)
		if err != nil {
			return nil, err
		}
		ups = append(ups, up)
	}
	if len(ups) == 0 {
		return nil, fmt.Errorf("%w in %q", ErrNoUpstreams, spec)
	}
	return ups, nil
}

// parseUpstream parses IP, IP:PORT or [IPv6]:PORT.
func parseUpstream(s string) (netip.AddrPort, error) {
	if addr, err := netip.ParseAddr(s); err == nil {
		return netip.AddrPortFrom(addr, dnsPort), nil
	}
	if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
		if addr, err := netip.ParseAddr(s[1 : len(s)-1]); err == nil {
			return netip.AddrPortFrom(addr, dnsPort), nil
		}
	}
	up, err := netip.ParseAddrPort(s)
	if err != nil || up.Port() == 0 {
		return netip.AddrPort{}, fmt.Errorf("%w %q: want IP, IP:PORT or [IPv6]:PORT", ErrInvalidUpstream, s)
	}
	return up, nil
}

// parseResolvConf returns the nameservers of a resolv.conf file, in order.
func parseResolvConf(data []byte) ([]netip.AddrPort, error) {
	var ups []netip.AddrPort
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 || fields[0] != "nameserver" {
			continue
		}
		addr, err := netip.ParseAddr(fields[1])
		if err != nil {
			return nil, fmt.Errorf("%w: nameserver %q", ErrInvalidUpstream, fields[1])
		}
		ups = append(ups, netip.AddrPortFrom(addr, dnsPort))
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading nameservers: %w", err)
	}
	if len(ups) == 0 {
		return nil, fmt.Errorf("%w: no nameserver lines", ErrNoUpstreams)
	}
	return ups, nil
}
