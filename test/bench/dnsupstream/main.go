// Command dnsupstream is the loopback DNS server the forwarder benchmark
// (hack/bench-dns.sh) forwards to. It answers every A query with one
// record, straight from the wire and with one reader per core, so that it
// is never the bottleneck of the forwarders being compared.
package main

import (
	"context"
	"encoding/binary"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"runtime"
	"syscall"

	"golang.org/x/sys/unix"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:5300", "UDP address to answer on.")
	readers := flag.Int("readers", runtime.GOMAXPROCS(0), "UDP sockets bound with SO_REUSEPORT, one reader each.")
	flag.Parse()
	if err := run(*listen, *readers); err != nil {
		fmt.Fprintln(os.Stderr, "dnsupstream:", err)
		os.Exit(1)
	}
}

func run(listen string, readers int) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var opErr error
		if err := c.Control(func(fd uintptr) {
			opErr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
		}); err != nil {
			return err
		}
		return opErr
	}}
	for range readers {
		pc, err := lc.ListenPacket(ctx, "udp", listen)
		if err != nil {
			return err
		}
		defer pc.Close()
		go serve(pc.(*net.UDPConn))
	}
	<-ctx.Done()
	return nil
}

// answer is appended after the question: a compression pointer to the
// question name, type A, class IN, TTL 300, 4 bytes of 198.51.100.1.
var answer = []byte{0xc0, 12, 0, 1, 0, 1, 0, 0, 1, 44, 0, 4, 198, 51, 100, 1}

func serve(c *net.UDPConn) {
	buf := make([]byte, 4096)
	out := make([]byte, 4096)
	for {
		n, from, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		if reply := respond(buf[:n], out); reply != nil {
			_, _ = c.WriteToUDPAddrPort(reply, from)
		}
	}
}

// respond answers a query with one question; the EDNS0 OPT record of the
// query, if any, is echoed.
func respond(q, out []byte) []byte {
	if len(q) < 12 || q[2]&0x80 != 0 || binary.BigEndian.Uint16(q[4:]) != 1 {
		return nil
	}
	off := 12
	for off < len(q) && q[off] != 0 {
		if q[off]&0xc0 != 0 {
			return nil
		}
		off += int(q[off]) + 1
	}
	off += 5
	if off > len(q) {
		return nil
	}
	n := copy(out, q[:off])
	out[2] = 0x84 | q[2]&0x01 // QR, AA, RD copied
	out[3] = 0x80             // RA, NOERROR
	binary.BigEndian.PutUint16(out[6:], 0)
	binary.BigEndian.PutUint16(out[8:], 0)
	binary.BigEndian.PutUint16(out[10:], 0)
	if binary.BigEndian.Uint16(q[off-4:]) == 1 {
		binary.BigEndian.PutUint16(out[6:], 1)
		n += copy(out[n:], answer)
	}
	if binary.BigEndian.Uint16(q[10:]) == 1 && len(q)-off >= 11 && q[off] == 0 && binary.BigEndian.Uint16(q[off+1:]) == 41 {
		binary.BigEndian.PutUint16(out[10:], 1)
		n += copy(out[n:], q[off:off+11])
		binary.BigEndian.PutUint16(out[n-2:], 0) // no options
	}
	return out[:n]
}
