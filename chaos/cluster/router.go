package cluster

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/edgekv/edgekv/wire/handshake"
)

// router is the one peer address every member is told for member `to`
// (its --advertise-peer and its entry in everyone's --initial-cluster):
// edgekv replicates one peer address per member, so per-dialer addresses
// cannot be given out. The router reads the Hello that opens every peer
// connection (wire/handshake: the dialer names itself first), and splices
// the connection into the proxy of the directed link sender→to, replaying
// the Hello bytes it read. Faults stay per directed link while the
// members share one view of the addresses, as in a real deployment.
//
// It must never forward a byte of a connection whose sender it cannot
// name (it closes it), never read more than handshake.MaxHelloBytes before
// routing, and never outlive close.
type router struct {
	to     int
	ln     net.Listener
	linkOf func(from int) string // proxy address of link from→to; "" if none
	byName map[string]int

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup
}

// helloTimeout bounds how long a dialer may take to send its Hello.
const helloTimeout = 5 * time.Second

func startRouter(to int, byName map[string]int, linkOf func(int) string) (*router, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("cluster: router listen: %w", err)
	}
	r := &router{to: to, ln: ln, linkOf: linkOf, byName: byName, conns: map[net.Conn]struct{}{}}
	r.wg.Add(1)
	go r.accept()
	return r, nil
}

func (r *router) addr() string { return r.ln.Addr().String() }

func (r *router) accept() {
	defer r.wg.Done()
	for {
		c, err := r.ln.Accept()
		if err != nil {
			return // closed
		}
		if !r.track(c) {
			c.Close()
			return
		}
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			defer r.untrack(c)
			r.serve(c)
		}()
	}
}

func (r *router) track(c net.Conn) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return false
	}
	r.conns[c] = struct{}{}
	return true
}

func (r *router) untrack(c net.Conn) {
	r.mu.Lock()
	delete(r.conns, c)
	r.mu.Unlock()
	c.Close()
}

// route reads the dialer's Hello and returns the link proxy to use and the
// bytes read.
func (r *router) route(c net.Conn) (string, []byte, error) {
	var hello bytes.Buffer
	c.SetReadDeadline(time.Now().Add(helloTimeout))
	h, err := handshake.Read(io.TeeReader(c, &hello))
	c.SetReadDeadline(time.Time{})
	if err != nil {
		return "", nil, err
	}
	from, ok := r.byName[h.SenderName]
	if !ok || from == r.to {
		return "", nil, fmt.Errorf("cluster: router: unknown sender %q", h.SenderName)
	}
	addr := r.linkOf(from)
	if addr == "" {
		return "", nil, errors.New("cluster: router: no link")
	}
	return addr, hello.Bytes(), nil
}

func (r *router) serve(c net.Conn) {
	addr, hello, err := r.route(c)
	if err != nil {
		return
	}
	up, err := net.DialTimeout("tcp", addr, helloTimeout)
	if err != nil {
		return
	}
	if !r.track(up) {
		up.Close()
		return
	}
	defer r.untrack(up)
	if _, err := up.Write(hello); err != nil {
		return
	}
	done := make(chan struct{}, 2)
	go func() { io.Copy(up, c); done <- struct{}{} }()
	go func() { io.Copy(c, up); done <- struct{}{} }()
	<-done
	// Either side ending ends both, as one TCP connection would.
	c.Close()
	up.Close()
	<-done
}

// close stops accepting, cuts every connection and waits.
func (r *router) close() {
	r.mu.Lock()
	r.closed = true
	conns := make([]net.Conn, 0, len(r.conns))
	for c := range r.conns {
		conns = append(conns, c)
	}
	r.mu.Unlock()
	r.ln.Close()
	for _, c := range conns {
		c.Close()
	}
	r.wg.Wait()
}
