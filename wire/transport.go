// Package wire is the edgekv peer transport: it carries Raft messages,
// snapshot streams and forwarded client requests between nodes over raw
// TCP, using the handshake, frame and codec packages below it.
//
// Connections. For every peer, a node dials three long-lived connections,
// one per lane, each with its own bounded queue and writer goroutine:
//
//	lane      carries                                      codec (auto)
//	control   votes, heartbeats, responses, read-index,    snappy above threshold
//	          forwarded read requests, outcomes
//	append    MsgApp, MsgProp, forwarded proposals         snappy above threshold
//	snapshot  one snapshot stream per connection, chunked  zstd
//
// so a heartbeat or vote never waits behind a large append or snapshot.
// Messages flow from dialer to acceptor; the acceptor answers only on the
// snapshot lane (flow-control acks). Outcomes of forwarded requests travel
// back on the leader's own control connection to the follower.
//
// Versions: each connection negotiates the highest protocol version both
// nodes speak (package handshake); today there is only version 1. A change
// to the frame or batch encoding (for example a field added to
// raftmsg.Message) needs a new version, with the encoders choosing by the
// session's negotiated version so that mixed clusters keep working.
//
// Sending never blocks: Send puts the message in the peer's bounded queue
// or returns false (queue full, peer unknown), and the runtime tells Raft
// the peer is unreachable. Each writer takes one message, then drains the
// queue without waiting up to MaxBatchBytes and writes the batch as one
// record (header and payload in one writev). A broken connection is
// redialled with exponential backoff and jitter.
//
// Receiving: one goroutine per inbound connection reads records into
// pooled buffers (zerocopy), decodes them without copying and hands each
// batch to Handler.HandleBatch, which owns it until Release.
//
// Lifetime rule of received data: entry Data, forwarded payloads and
// outcome bodies in a *Batch point into the receive buffer; the handler
// releases the batch exactly once when it no longer needs them (after the
// Raft core has copied entries into its log, or after they were written to
// the WAL). Outcome bodies returned by Forward are copies owned by the
// caller. Entries given to Send are referenced, not copied, until written
// to the socket: they must not be modified (Raft entries are immutable, so
// this holds naturally). Forward and Respond copy what they are given.
//
// API for the node runtime:
//
//	NewTransport(Config) (*Transport, error)  listen and accept peers; Config
//	    names this node (LocalID, LocalName, ClusterID), the listen address,
//	    Compression, frame/queue bounds, deadlines, a *slog.Logger and the
//	    Handler that receives everything
//	(*Transport).Addr() net.Addr              the bound listen address
//	(*Transport).AddPeer(id, name, addr)      start talking to a member (also
//	    at run time, after a membership change; re-adding with a new
//	    address replaces the peer)
//	(*Transport).RemovePeer(id)               stop: queues, writers and the
//	    peer's inbound connections
//	(*Transport).Send(msg) bool               queue a Raft message, never
//	    blocks; false = dropped (tell Raft: ReportUnreachable)
//	(*Transport).SendSnapshot(msg, data io.ReaderAt, size) error
//	    stream a snapshot in the background; result in Handler.SnapshotDone
//	(*Transport).Forward(ctx, leader, ForwardRequest) (Outcome, error)
//	    a follower's client request (propose or read-index) to the leader
//	(*Transport).Respond(follower, Outcome) bool
//	    the leader's answer to a request received in Batch.Forwards
//	(*Transport).Status(id) (PeerStatus, bool) reachable, messages dropped
//	(*Transport).Close() error                stop every goroutine and wait
//
//	Handler.HandleBatch(*Batch)               messages and forwarded requests;
//	    the handler owns the batch and calls Release exactly once
//	Handler.HandleSnapshot(msg, io.Reader) error
//	Handler.PeerUnreachable(id)               a connection to id failed
//	Handler.SnapshotDone(to, index, err)
//
// Handler methods must return (Close waits for them) and must not call
// AddPeer, RemovePeer or Close.
//
// Every goroutine is owned by the Transport (accept loop, inbound
// connections) or by a peer (lane writers, snapshot sender); Close and
// RemovePeer stop them and wait for them. The package must never block a
// caller of Send, never trust a length from the wire before bounding it,
// and never let one slow peer hold memory beyond its queue bounds.
package wire

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"

	"github.com/edgekv/edgekv/consensus/raftmsg"
	"github.com/edgekv/edgekv/wire/codec"
	"github.com/edgekv/edgekv/wire/frame"
	"github.com/edgekv/edgekv/wire/handshake"
	"github.com/edgekv/edgekv/zerocopy"
)

// Lanes of a peer pair.
const (
	laneControl uint8 = iota
	laneAppend
	laneSnapshot
	laneCount
)

func laneName(l uint8) string {
	return [...]string{"control", "append", "snapshot", "?"}[min(int(l), 3)]
}

// Errors returned by the Transport.
var (
	ErrClosed      = errors.New("wire: transport closed")
	ErrUnknownPeer = errors.New("wire: unknown peer")
	ErrQueueFull   = errors.New("wire: send queue full")
	ErrBusy        = errors.New("wire: a snapshot to this peer is already being sent")
	ErrTooLarge    = errors.New("wire: message larger than the record limit")
	// ErrConnectionLost ends a Forward whose connection to the leader
	// broke: the outcome is unknown (the request may still commit).
	ErrConnectionLost = errors.New("wire: connection to the leader lost, outcome unknown")
)

// Transport connects this node to its peers.
type Transport struct {
	cfg      Config
	log      *slog.Logger
	ln       net.Listener
	pool     *zerocopy.Pool
	batches  codec.BatchPool
	local    handshake.Local
	waiters  waiters
	stop     chan struct{}
	stopOnce sync.Once
	wg       sync.WaitGroup // accept loop and inbound connections

	// peers is replaced, never modified, under mu: Send reads it without a
	// lock.
	peers atomic.Pointer[map[raftmsg.NodeID]*peer]

	mu struct {
		sync.Mutex
		closed  bool
		inbound map[net.Conn]raftmsg.NodeID
	}
}

// NewTransport listens on cfg.ListenAddr and starts accepting peers.
func NewTransport(cfg Config) (*Transport, error) {
	c, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", c.ListenAddr)
	if err != nil {
		return nil, fmt.Errorf("wire: listen: %w", err)
	}
	t := &Transport{
		cfg:  c,
		log:  c.Logger.With("local", c.LocalName),
		ln:   ln,
		pool: newReceivePool(&c),
		stop: make(chan struct{}),
	}
	t.waiters.init()
	t.mu.inbound = make(map[net.Conn]raftmsg.NodeID)
	empty := map[raftmsg.NodeID]*peer{}
	t.peers.Store(&empty)
	t.local = handshake.Local{
		MinVersion: c.versionMin, MaxVersion: c.versionMax,
		ClusterID: c.ClusterID, ID: c.LocalID, Name: c.LocalName,
		Lanes:  1<<laneControl | 1<<laneAppend | 1<<laneSnapshot,
		Codecs: supportedCodecs,
		PeerName: func(id raftmsg.NodeID) (string, bool) {
			if p := t.peer(id); p != nil {
				return p.name, true
			}
			return "", false
		},
	}
	t.wg.Add(1)
	go t.acceptLoop()
	return t, nil
}

// newReceivePool sizes the receive buffers from the declared bounds:
//
//	smallest buffer  4 KiB            (a page: heartbeats and votes share it)
//	largest buffer   MaxRecordBytes   (one whole record, split or not)
//	kept idle        ReceiveRetainBytes in total, split evenly over the classes
//
// Buffers in use are bounded by the inbound connections (at most
// maxInboundConns, one record being read each) plus the batches the
// handler holds; beyond the idle budget they are left to the collector.
func newReceivePool(c *Config) *zerocopy.Pool {
	const minBytes = 4 << 10
	perClass := c.ReceiveRetainBytes / zerocopy.ClassCount(minBytes, c.MaxRecordBytes)
	p := zerocopy.NewPool(minBytes, c.MaxRecordBytes, perClass)
	if p.RetainedBoundBytes() > c.ReceiveRetainBytes {
		panic(fmt.Sprintf("wire: receive pool keeps %d bytes idle, budget %d", p.RetainedBoundBytes(), c.ReceiveRetainBytes))
	}
	return p
}

// supportedCodecs: every codec this build decodes.
const supportedCodecs = 1<<frame.CodecNone | 1<<frame.CodecSnappy | 1<<frame.CodecZstd

// Addr is the address the transport listens on.
func (t *Transport) Addr() net.Addr { return t.ln.Addr() }

func (t *Transport) peer(id raftmsg.NodeID) *peer { return (*t.peers.Load())[id] }

// AddPeer starts talking to a member (at start, or when a membership change
// adds it). Adding a known id with another name or address replaces it.
func (t *Transport) AddPeer(id raftmsg.NodeID, name, addr string) error {
	if id == raftmsg.None || id == t.cfg.LocalID || name == "" || len(name) > handshake.MaxNameBytes {
		return fmt.Errorf("wire: AddPeer(%#x, %q): bad id or name", uint64(id), name)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.mu.closed {
		return ErrClosed
	}
	old := *t.peers.Load()
	if p := old[id]; p != nil {
		if p.name == name && p.addr == addr {
			return nil
		}
		p.shutdown()
	}
	next := make(map[raftmsg.NodeID]*peer, len(old)+1)
	for k, v := range old {
		next[k] = v
	}
	next[id] = t.startPeer(id, name, addr)
	t.peers.Store(&next)
	return nil
}

// RemovePeer stops talking to a member: its queues, writers and inbound
// connections are closed.
func (t *Transport) RemovePeer(id raftmsg.NodeID) {
	t.mu.Lock()
	old := *t.peers.Load()
	p := old[id]
	if p != nil {
		next := make(map[raftmsg.NodeID]*peer, len(old))
		for k, v := range old {
			if k != id {
				next[k] = v
			}
		}
		t.peers.Store(&next)
		for c, from := range t.mu.inbound {
			if from == id {
				c.Close() // its goroutine unregisters it
			}
		}
	}
	t.mu.Unlock()
	if p != nil {
		p.shutdown()
	}
}

// laneFor picks the lane of a Raft message: everything that may be large
// goes to the append lane, everything latency-critical to the control lane.
func laneFor(t raftmsg.MessageType) uint8 {
	switch t {
	case raftmsg.MsgApp, raftmsg.MsgProp:
		return laneAppend
	}
	return laneControl
}

// Send queues m for m.To and returns at once: false when the peer is
// unknown, the message does not fit a record, or the queue is full (the
// message is dropped; tell Raft the peer is unreachable). m.Entries are
// referenced, not copied, until sent. MsgSnap goes through SendSnapshot.
func (t *Transport) Send(m raftmsg.Message) bool {
	p := t.peer(m.To)
	if p == nil || m.Type == raftmsg.MsgSnap || !m.Type.Valid() {
		return false
	}
	return p.lanes[laneFor(m.Type)].enqueue(outItem{kind: itemMessage, msg: m, bytes: codec.MessageBytes(&m)})
}

// Respond sends the outcome of a request that peer `to` forwarded
// (received in a Batch's Forwards); o.Body is copied. False if it could
// not be queued; the follower's Forward then ends with its context
// (outcome unknown).
func (t *Transport) Respond(to raftmsg.NodeID, o Outcome) bool {
	p := t.peer(to)
	if p == nil {
		return false
	}
	o.Body = bytes.Clone(o.Body) // the caller may reuse its buffer at once
	lane := laneControl
	if len(o.Body) > 64<<10 {
		lane = laneAppend
	}
	return p.lanes[lane].enqueue(outItem{kind: itemOutcome, out: o, bytes: codec.OutcomeBytes(&o)})
}

// Forward sends a client request to the leader `to` and waits for its
// outcome, ctx, or the loss of a connection to it (ErrConnectionLost).
// req.Payload is copied, so the caller may reuse it as soon as Forward
// returns. Request ids must be unique among this node's requests in
// flight. An error means the outcome is unknown (the request may still
// commit) unless it is ErrQueueFull or ErrUnknownPeer (not sent).
func (t *Transport) Forward(ctx context.Context, to raftmsg.NodeID, req ForwardRequest) (Outcome, error) {
	p := t.peer(to)
	if p == nil {
		return Outcome{}, fmt.Errorf("%w %#x", ErrUnknownPeer, uint64(to))
	}
	// Copied: on a timeout Forward returns while the request may still
	// sit in the queue, and HTTP servers reuse request bodies.
	req.Payload = bytes.Clone(req.Payload)
	w, err := t.waiters.add(req.RequestID, to)
	if err != nil {
		return Outcome{}, err
	}
	lane := laneControl
	if req.Op == ForwardPropose {
		lane = laneAppend
	}
	if !p.lanes[lane].enqueue(outItem{kind: itemForward, fwd: req, bytes: codec.ForwardRequestBytes(&req)}) {
		t.waiters.remove(req.RequestID, w)
		return Outcome{}, ErrQueueFull
	}
	select {
	case r := <-w:
		t.waiters.remove(req.RequestID, w)
		return r.out, r.err
	case <-ctx.Done():
		t.waiters.remove(req.RequestID, w)
		return Outcome{RequestID: req.RequestID, Status: StatusUnknown}, fmt.Errorf("wire: forward %d to %#x: %w", req.RequestID, uint64(to), ctx.Err())
	case <-t.stop:
		t.waiters.remove(req.RequestID, w)
		return Outcome{RequestID: req.RequestID, Status: StatusUnknown}, ErrClosed
	}
}

// SendSnapshot streams a snapshot to msg.To in the background: msg is the
// MsgSnap, data holds sizeBytes of snapshot and is read from offset 0 on
// each attempt (a broken connection restarts the stream on a new one, up
// to SnapshotAttempts). The result arrives in Handler.SnapshotDone. It
// returns ErrBusy if a snapshot to that peer is already in flight.
func (t *Transport) SendSnapshot(msg raftmsg.Message, data io.ReaderAt, sizeBytes int64) error {
	p := t.peer(msg.To)
	if p == nil {
		return fmt.Errorf("%w %#x", ErrUnknownPeer, uint64(msg.To))
	}
	if msg.Type != raftmsg.MsgSnap || sizeBytes < 0 {
		return fmt.Errorf("wire: SendSnapshot of %s with %d bytes", msg.Type, sizeBytes)
	}
	select {
	case p.snapJobs <- snapJob{msg: msg, data: data, size: sizeBytes}:
		return nil
	default:
		return ErrBusy
	}
}

// PeerStatus describes the transport's view of one peer.
type PeerStatus struct {
	// Reachable: the control and append lanes both have a live,
	// handshaken connection.
	Reachable bool
	// Dropped counts messages refused by Send (queue full) or dropped as
	// too large, since the peer was added.
	Dropped uint64
}

// Status reports on peer id (ok false if unknown), for /v1/cluster and
// metrics.
func (t *Transport) Status(id raftmsg.NodeID) (PeerStatus, bool) {
	p := t.peer(id)
	if p == nil {
		return PeerStatus{}, false
	}
	return PeerStatus{
		Reachable: p.lanes[laneControl].connected.Load() && p.lanes[laneAppend].connected.Load(),
		Dropped:   p.lanes[laneControl].dropped.Load() + p.lanes[laneAppend].dropped.Load(),
	}, true
}

// Close stops every goroutine the transport started and waits for them.
// Forward calls in flight return ErrClosed.
func (t *Transport) Close() error {
	t.stopOnce.Do(func() {
		t.mu.Lock()
		t.mu.closed = true
		close(t.stop)
		for c := range t.mu.inbound {
			c.Close()
		}
		peers := *t.peers.Load()
		empty := map[raftmsg.NodeID]*peer{}
		t.peers.Store(&empty)
		t.mu.Unlock()
		t.ln.Close()
		for _, p := range peers {
			p.shutdown()
		}
		t.wg.Wait()
	})
	return nil
}

func (t *Transport) closed() bool {
	select {
	case <-t.stop:
		return true
	default:
		return false
	}
}
