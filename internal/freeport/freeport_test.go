package freeport

import (
	"net"
	"strconv"
	"testing"
)

// TestAddrIsBelowTheEphemeralRange: every pick is a loopback port below
// the kernel's ephemeral range, and free (it can be listened on).
func TestAddrIsBelowTheEphemeralRange(t *testing.T) {
	hi := ephemeralLow()
	for range 50 {
		addr, err := Addr()
		if err != nil {
			t.Fatal(err)
		}
		host, p, err := net.SplitHostPort(addr)
		if err != nil {
			t.Fatal(err)
		}
		port, _ := strconv.Atoi(p)
		if host != "127.0.0.1" || port < lowestPort || port >= hi {
			t.Fatalf("picked %s, want 127.0.0.1 with a port in [%d, %d)", addr, lowestPort, hi)
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatalf("picked %s, which cannot be listened on: %v", addr, err)
		}
		ln.Close()
	}
}
