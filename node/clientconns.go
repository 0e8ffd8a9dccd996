package node

import (
	"net"
	"sync"
	"sync/atomic"
)

// clientListener is the HTTP listener, remembering its open connections
// so that a stop can close the silent ones: connections that never sent a
// byte, which an HTTP client dials ahead and parks in its pool. fasthttp's
// shutdown waits for every connection to go idle, and counts one that is
// waiting for its first request as busy until its read timeout (30 s), so
// one parked connection held a SIGTERM stop past its bound (found in CI).
// Nothing is being served on a silent connection: closing it loses no
// request. The bookkeeping is per connection, never per request (one
// atomic load per read).
type clientListener struct {
	net.Listener
	mu    sync.Mutex
	conns map[*clientConn]struct{}
}

func newClientListener(ln net.Listener) *clientListener {
	return &clientListener{Listener: ln, conns: make(map[*clientConn]struct{})}
}

func (l *clientListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	cc := &clientConn{Conn: c, l: l}
	l.mu.Lock()
	l.conns[cc] = struct{}{}
	l.mu.Unlock()
	return cc, nil
}

// closeSilent closes every open connection that has not sent a byte.
func (l *clientListener) closeSilent() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for c := range l.conns {
		if !c.spoke.Load() {
			_ = c.Conn.Close() // nothing sent, nothing to answer; its server goroutine ends on the read error
		}
	}
}

type clientConn struct {
	net.Conn
	l         *clientListener
	spoke     atomic.Bool // a byte was read
	closeOnce sync.Once
}

func (c *clientConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 && !c.spoke.Load() {
		c.spoke.Store(true)
	}
	return n, err
}

func (c *clientConn) Close() error {
	c.closeOnce.Do(func() {
		c.l.mu.Lock()
		delete(c.l.conns, c)
		c.l.mu.Unlock()
	})
	return c.Conn.Close()
}
