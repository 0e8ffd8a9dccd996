// Package freeport picks loopback TCP ports for the processes that tests
// and test harnesses start. It never returns a port from the kernel's
// ephemeral range (net.ipv4.ip_local_port_range, 32768-60999 by default):
// a port found there with Listen("127.0.0.1:0") and released can be taken,
// before the process binds it, as the local port of any outgoing
// connection (found in CI: a chaos member exited with "bind: address
// already in use"). The product itself must never use it: a node listens
// where its flags say.
package freeport

import (
	"errors"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
)

// lowestPort is where the picks start: above the well-known and most
// registered service ports.
const lowestPort = 10000

// maxTries bounds the search; each try is one listen.
const maxTries = 1000

// Addr returns "127.0.0.1:<port>" for a port below the ephemeral range
// that nobody listens on now.
func Addr() (string, error) {
	hi := ephemeralLow()
	if hi <= lowestPort+100 {
		return "", errors.New("freeport: the ephemeral port range leaves no room below it")
	}
	for range maxTries {
		port := lowestPort + rand.IntN(hi-lowestPort)
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			continue // taken: try another
		}
		addr := ln.Addr().String()
		if err := ln.Close(); err != nil {
			return "", err
		}
		return addr, nil
	}
	return "", errors.New("freeport: no free loopback port found below the ephemeral range")
}

// ephemeralLow is the first port of the kernel's ephemeral range (32768
// when it cannot be read).
func ephemeralLow() int {
	const fallback = 32768
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return fallback
	}
	fields := strings.Fields(string(b))
	if len(fields) != 2 {
		return fallback
	}
	lo, err := strconv.Atoi(fields[0])
	if err != nil || lo < 1 {
		return fallback
	}
	return lo
}
