// Package faultproxy is a TCP proxy, owned by a test, that sits on one
// directed peer link (node A dialling node B) and misbehaves on command:
// it blocks either direction (a partition, full or one-way), delays bytes by
// a latency with jitter while keeping their order, stalls the stream, and
// drops live connections. With one proxy per directed pair, a test builds
// any network fault without root, iptables or containers.
//
// It must never reorder, duplicate or corrupt the bytes it does deliver
// (TCP never would), never buffer without bound (a delayed direction holds
// at most maxQueuedChunks reads, then stops reading so TCP pushes back), and
// never outlive Close: every goroutine it starts ends when Close returns.
// It listens and dials only where it is told; tests give it loopback.
//
// Fault semantics, chosen to match what a real network does to TCP:
//   - Blocked direction: bytes are no longer forwarded and connections are
//     cut (a partition longer than any TCP timeout ends in a reset). New
//     connections are accepted and closed at once while the forward
//     direction is blocked (the dialler sees the peer as unreachable).
//   - Stalled direction: bytes stay queued and are delivered, in order,
//     once the stall is lifted (a short partition TCP retransmits across).
//   - Latency and jitter: each chunk is delivered at read time plus
//     Latency plus a uniform [0, Jitter) extra, never before the chunk read
//     before it. The last stretch before a chunk is due is waited on a
//     high-resolution timer (dueTimer), since Go's timers fire up to 1 ms
//     late; how late chunks were written anyway is counted in Stats.
package faultproxy

import (
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync"
	"time"
)

// maxQueuedChunks bounds the chunks read but not yet written, per direction
// per connection: with readChunkBytes each, at most 2 MiB in flight.
const (
	maxQueuedChunks = 64
	readChunkBytes  = 32 << 10
)

// dueWindow is the last stretch before a delayed chunk is due that is
// waited out on the precise dueTimer rather than on Go's timer (late by up
// to 1 ms). A fault set during that stretch takes effect after the chunk.
const dueWindow = 2 * time.Millisecond

// usable reports whether t exists and has not failed (due_*.go).
func (t *dueTimer) usable() bool { return t != nil && !t.failed }

// Direction names one half of a proxied connection.
type Direction int

const (
	// Forward is dialler → target.
	Forward Direction = iota
	// Backward is target → dialler.
	Backward
)

func (d Direction) String() string {
	if d == Forward {
		return "forward"
	}
	return "backward"
}

// Faults is the misbehaviour in force. The zero value is a clean link.
type Faults struct {
	// Blocked cuts a direction (see the package comment).
	Blocked [2]bool
	// Stalled holds a direction's bytes until it is cleared.
	Stalled [2]bool
	// Latency and Jitter delay every chunk, in each direction: a round
	// trip through the proxy gains 2*Latency (set 25ms for a 50ms RTT).
	Latency time.Duration
	Jitter  time.Duration
}

// Stats counts what the proxy did, for tests to assert coverage.
type Stats struct {
	Accepted       int64    // connections accepted
	Refused        int64    // connections closed at once because Forward was blocked
	Cut            int64    // connections cut by a block or DropConnections
	BytesQueued    [2]int64 // read from one side, not necessarily delivered
	BytesForwarded [2]int64 // written to the other side
	// DelayedChunks counts chunks written under a latency, per direction,
	// and Lateness sums how long after their due time (read time plus
	// latency and jitter) they were written: the proxy's own error, which
	// the system under test is charged with.
	DelayedChunks [2]int64
	Lateness      [2]time.Duration
}

// Proxy forwards one listening address to one target address.
type Proxy struct {
	target string
	ln     net.Listener
	log    *slog.Logger

	// mu guards the fields below it; faultsChanged is closed and replaced on
	// every change so copiers waiting on a stall or delay wake up.
	mu            sync.Mutex
	faults        Faults
	faultsChanged chan struct{}
	conns         map[*link]struct{}
	stats         Stats
	rng           *rand.Rand
	closed        bool

	wg sync.WaitGroup // every goroutine the proxy started
}

// link is one accepted connection and its dialled counterpart.
type link struct {
	client, server net.Conn
	closeOnce      sync.Once
}

func (l *link) close() {
	l.closeOnce.Do(func() {
		l.client.Close()
		l.server.Close()
	})
}

// Start listens on listenAddr (use "127.0.0.1:0" for any free port) and
// forwards to target. seed makes jitter reproducible.
func Start(listenAddr, target string, seed uint64, log *slog.Logger) (*Proxy, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ln, err := net.Listen("tcp", listenAddr)
	if err != nil {
		return nil, fmt.Errorf("faultproxy: listen %s: %w", listenAddr, err)
	}
	p := &Proxy{
		target:        target,
		ln:            ln,
		log:           log.With("proxy", ln.Addr().String(), "target", target),
		faultsChanged: make(chan struct{}),
		conns:         map[*link]struct{}{},
		rng:           rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
	}
	p.wg.Add(1)
	go p.acceptLoop()
	return p, nil
}

// Addr is the address to dial instead of the target.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Stats returns a copy of the counters.
func (p *Proxy) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stats
}

// SetFaults replaces the faults in force. Blocking a direction cuts every
// live connection.
func (p *Proxy) SetFaults(f Faults) {
	p.mu.Lock()
	p.faults = f
	p.wakeWaitersLocked()
	var cut []*link
	if f.Blocked[Forward] || f.Blocked[Backward] {
		cut = p.takeConnsLocked()
	}
	p.mu.Unlock()
	for _, l := range cut {
		l.close()
	}
}

// Heal clears every fault.
func (p *Proxy) Heal() { p.SetFaults(Faults{}) }

// DropConnections cuts every live connection; new ones are accepted as
// the faults in force allow.
func (p *Proxy) DropConnections() {
	p.mu.Lock()
	cut := p.takeConnsLocked()
	p.mu.Unlock()
	for _, l := range cut {
		l.close()
	}
}

// wakeWaitersLocked makes every copier waiting in waitDeliverable re-read
// the faults and the closed flag.
func (p *Proxy) wakeWaitersLocked() {
	close(p.faultsChanged)
	p.faultsChanged = make(chan struct{})
}

func (p *Proxy) takeConnsLocked() []*link {
	cut := make([]*link, 0, len(p.conns))
	for l := range p.conns {
		cut = append(cut, l)
		delete(p.conns, l)
	}
	p.stats.Cut += int64(len(cut))
	return cut
}

// Close stops listening, cuts every connection and waits for every
// goroutine the proxy started.
func (p *Proxy) Close() error {
	p.mu.Lock()
	p.closed = true
	p.wakeWaitersLocked()
	cut := p.takeConnsLocked()
	p.mu.Unlock()
	err := p.ln.Close()
	for _, l := range cut {
		l.close()
	}
	p.wg.Wait()
	return err
}

func (p *Proxy) acceptLoop() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				p.log.Warn("faultproxy: accept failed, proxy stops", "err", err)
			}
			return
		}
		p.mu.Lock()
		refuse := p.faults.Blocked[Forward] || p.closed
		if refuse {
			p.stats.Refused++
		} else {
			p.stats.Accepted++
		}
		p.mu.Unlock()
		if refuse {
			c.Close()
			continue
		}
		p.wg.Add(1)
		go p.serve(c)
	}
}

// serve dials the target for one accepted connection and runs both copiers.
func (p *Proxy) serve(client net.Conn) {
	defer p.wg.Done()
	server, err := net.DialTimeout("tcp", p.target, 2*time.Second)
	if err != nil {
		p.log.Debug("faultproxy: dial target failed", "err", err)
		client.Close()
		return
	}
	l := &link{client: client, server: server}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		l.close()
		return
	}
	p.conns[l] = struct{}{}
	p.mu.Unlock()

	var copiers sync.WaitGroup
	copiers.Add(2)
	go func() { defer copiers.Done(); p.pipe(l, Forward, client, server) }()
	go func() { defer copiers.Done(); p.pipe(l, Backward, server, client) }()
	copiers.Wait()
	p.mu.Lock()
	delete(p.conns, l)
	p.mu.Unlock()
}

type chunk struct {
	data    []byte
	readAt  time.Time
	jitter  time.Duration
	release func()
}

// pipe copies one direction through a bounded queue: a reader stamps each
// chunk with its read time, a writer delivers it when the faults allow.
// Either side ending closes the whole link, as a TCP reset would.
func (p *Proxy) pipe(l *link, dir Direction, from, to net.Conn) {
	defer l.close()
	queue := make(chan chunk, maxQueuedChunks)
	// Chunk buffers come from a free list of the same bound, so a
	// direction never holds more than maxQueuedChunks*readChunkBytes.
	free := make(chan []byte, maxQueuedChunks+1)
	for i := 0; i < cap(free); i++ {
		free <- make([]byte, readChunkBytes)
	}
	done := make(chan struct{})
	go func() {
		defer close(queue)
		for {
			var buf []byte
			select {
			case buf = <-free:
			case <-done:
				return
			}
			n, err := from.Read(buf)
			if n > 0 {
				p.mu.Lock()
				jitter := time.Duration(0)
				if p.faults.Jitter > 0 {
					jitter = time.Duration(p.rng.Int64N(int64(p.faults.Jitter)))
				}
				p.stats.BytesQueued[dir] += int64(n)
				p.mu.Unlock()
				b := buf
				queue <- chunk{data: buf[:n], readAt: time.Now(), jitter: jitter, release: func() { free <- b }}
			} else {
				free <- buf
			}
			if err != nil {
				return
			}
		}
	}()
	defer func() {
		close(done)
		l.close() // unblocks the reader's Read
		for range queue {
		}
	}()

	due, err := newDueTimer()
	if err != nil {
		// Go's timer alone still delays correctly, up to 1 ms late.
		p.log.Warn("delays fall back to Go's timer", "err", err)
		due = nil
	} else {
		defer due.close()
	}
	var lastDeliver time.Time
	for c := range queue {
		deliverAt, ok := p.waitDeliverable(dir, c, lastDeliver, due)
		if !ok {
			return
		}
		lastDeliver = deliverAt
		late := time.Since(deliverAt)
		if _, err := to.Write(c.data); err != nil {
			return
		}
		p.mu.Lock()
		p.stats.BytesForwarded[dir] += int64(len(c.data))
		if deliverAt.After(c.readAt) {
			p.stats.DelayedChunks[dir]++
			p.stats.Lateness[dir] += late
		}
		p.mu.Unlock()
		c.release()
	}
}

// waitDeliverable blocks until chunk c may be written in direction dir, or
// reports false when the direction is blocked or the proxy closed. It
// re-reads the faults whenever they change, so lifting a stall or a delay
// takes effect at once, except within the last dueWindow before the chunk
// is due, which is waited out on due when there is one.
func (p *Proxy) waitDeliverable(dir Direction, c chunk, notBefore time.Time, due *dueTimer) (time.Time, bool) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		p.mu.Lock()
		f, changed, closed := p.faults, p.faultsChanged, p.closed
		p.mu.Unlock()
		if closed || f.Blocked[dir] {
			return time.Time{}, false
		}
		deliverAt := c.readAt.Add(f.Latency + min(c.jitter, f.Jitter))
		if deliverAt.Before(notBefore) {
			deliverAt = notBefore // never overtake the previous chunk
		}
		wait := time.Until(deliverAt)
		if !f.Stalled[dir] && wait <= 0 {
			return deliverAt, true
		}
		if !f.Stalled[dir] && due.usable() && wait <= dueWindow {
			if err := due.sleep(wait); err != nil {
				p.log.Warn("precise wait failed; delays fall back to Go's timer", "err", err)
				due.failed = true
			}
			continue
		}
		switch {
		case f.Stalled[dir]:
			wait = time.Hour
		case due.usable():
			wait -= dueWindow // wake early; due waits out the rest
		}
		timer.Reset(wait)
		select {
		case <-timer.C:
		case <-changed:
		}
	}
}
