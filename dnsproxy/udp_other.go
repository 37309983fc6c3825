//go:build !linux

package dnsproxy

import (
	"context"
	"fmt"
	"net"
	"net/netip"
)

// listenUDP binds one UDP socket served by the portable connListener:
// SO_REUSEPORT load balancing as Linux does it is not portable.
func (p *Proxy) listenUDP(ctx context.Context) ([]udpListener, netip.AddrPort, error) {
	var lc net.ListenConfig
	pc, err := lc.ListenPacket(ctx, "udp", p.cfg.Listen)
	if err != nil {
		return nil, netip.AddrPort{}, fmt.Errorf("listening on udp %s: %w", p.cfg.Listen, err)
	}
	c := pc.(*net.UDPConn)
	return []udpListener{&connListener{p: p, conn: c}}, c.LocalAddr().(*net.UDPAddr).AddrPort(), nil
}
