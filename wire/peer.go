package wire

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/edgekv/edgekv/consensus/raftmsg"
	"github.com/edgekv/edgekv/wire/codec"
	"github.com/edgekv/edgekv/wire/frame"
	"github.com/edgekv/edgekv/wire/handshake"
)

type itemKind uint8

const (
	itemMessage itemKind = iota + 1
	itemForward
	itemOutcome
)

// outItem is one queued record of a lane. Values, not pointers: queueing
// allocates nothing.
type outItem struct {
	kind  itemKind
	bytes int
	msg   raftmsg.Message
	fwd   ForwardRequest
	out   Outcome
}

// outLane is one bounded send queue and the goroutine draining it.
type outLane struct {
	lane        uint8
	q           chan outItem
	maxBytes    int64
	queuedBytes atomic.Int64
	dropped     atomic.Uint64
	connected   atomic.Bool // a handshaken connection is up
}

// enqueue never blocks: it reports false when the queue is full by count
// or bytes. One item larger than maxBytes passes when the queue is empty
// of bytes, so an oversized entry is never refused forever.
func (l *outLane) enqueue(it outItem) bool {
	b := int64(it.bytes)
	if n := l.queuedBytes.Add(b); n > l.maxBytes && n != b {
		l.queuedBytes.Add(-b)
		l.dropped.Add(1)
		return false
	}
	select {
	case l.q <- it:
		return true
	default:
		l.queuedBytes.Add(-b)
		l.dropped.Add(1)
		return false
	}
}

type snapJob struct {
	msg  raftmsg.Message
	data interface {
		ReadAt(p []byte, off int64) (int, error)
	}
	size int64
}

// peer owns the goroutines that send to one member: a writer per lane and
// a snapshot sender.
type peer struct {
	t          *Transport
	id         raftmsg.NodeID
	name, addr string
	lanes      [laneSnapshot]*outLane
	snapJobs   chan snapJob
	ctx        context.Context // cancelled by shutdown
	cancel     context.CancelFunc
	wg         sync.WaitGroup

	connMu sync.Mutex
	conns  map[net.Conn]struct{} // guarded by connMu: closed by shutdown to unblock I/O
}

func (t *Transport) startPeer(id raftmsg.NodeID, name, addr string) *peer {
	ctx, cancel := context.WithCancel(context.Background())
	p := &peer{t: t, id: id, name: name, addr: addr, ctx: ctx, cancel: cancel,
		snapJobs: make(chan snapJob, 1), conns: make(map[net.Conn]struct{})}
	p.lanes[laneControl] = &outLane{lane: laneControl, q: make(chan outItem, t.cfg.ControlQueueLen), maxBytes: int64(t.cfg.MaxQueueBytes)}
	p.lanes[laneAppend] = &outLane{lane: laneAppend, q: make(chan outItem, t.cfg.AppendQueueLen), maxBytes: int64(t.cfg.MaxQueueBytes)}
	for _, l := range p.lanes {
		p.wg.Add(1)
		go p.runLane(l)
	}
	p.wg.Add(1)
	go p.runSnapshots()
	return p
}

// shutdown stops the peer's goroutines and waits for them.
func (p *peer) shutdown() {
	p.cancel()
	p.connMu.Lock()
	for c := range p.conns {
		c.Close()
	}
	p.connMu.Unlock()
	p.wg.Wait()
}

func (p *peer) track(c net.Conn) bool {
	p.connMu.Lock()
	defer p.connMu.Unlock()
	if p.ctx.Err() != nil {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *peer) untrack(c net.Conn) {
	p.connMu.Lock()
	delete(p.conns, c)
	p.connMu.Unlock()
	c.Close()
}

// wait sleeps d unless the peer stops first; false when stopped.
func (p *peer) wait(d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-p.ctx.Done():
		return false
	}
}

// backoff is exponential with jitter: the n-th wait is uniform in
// [d/2, d] with d = min(max, base·2^n), so peers that lost a node at the
// same moment do not redial in lockstep.
type backoff struct {
	base, max time.Duration
	attempt   int
	rng       *rand.Rand
}

func (b *backoff) next() time.Duration {
	d := b.base << min(b.attempt, 30)
	if d > b.max || d <= 0 {
		d = b.max
	}
	b.attempt++
	half := d / 2
	return half + time.Duration(b.rng.Int64N(int64(d-half)+1))
}

func (b *backoff) reset() { b.attempt = 0 }

func (p *peer) newBackoff(lane uint8) *backoff {
	return &backoff{base: p.t.cfg.BackoffBase, max: p.t.cfg.BackoffMax,
		rng: rand.New(rand.NewPCG(p.t.cfg.Seed, uint64(p.id)<<2|uint64(lane)))}
}

// session is a connected, handshaken lane.
type session struct {
	conn    net.Conn
	version uint16
	limits  frame.Limits
	codec   frame.Codec
}

var errStopped = errors.New("wire: peer stopped")

// connect dials the peer on a lane and runs the handshake.
func (p *peer) connect(lane uint8, want frame.Codec) (*session, error) {
	cfg := &p.t.cfg
	d := net.Dialer{Timeout: cfg.DialTimeout}
	conn, err := d.DialContext(p.ctx, "tcp", p.addr)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", p.addr, err)
	}
	if !p.track(conn) {
		conn.Close()
		return nil, errStopped
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
	}
	s, err := p.handshake(conn, lane, want)
	if err != nil {
		p.untrack(conn)
		return nil, err
	}
	return s, nil
}

func (p *peer) handshake(conn net.Conn, lane uint8, want frame.Codec) (*session, error) {
	cfg := &p.t.cfg
	conn.SetDeadline(time.Now().Add(cfg.HandshakeTimeout))
	hello := handshake.Hello{
		MinVersion: cfg.versionMin, MaxVersion: cfg.versionMax, ClusterID: cfg.ClusterID,
		Lane: lane, Codecs: supportedCodecs, SenderID: cfg.LocalID, ReceiverID: p.id,
		MaxFrameBytes: uint32(cfg.MaxFrameBytes), MaxRecordBytes: uint32(cfg.MaxRecordBytes),
		SenderName: cfg.LocalName, ReceiverName: p.name,
	}
	if err := handshake.Write(conn, &hello); err != nil {
		return nil, err
	}
	reply, err := handshake.Read(conn)
	if err != nil {
		return nil, err
	}
	v, err := handshake.CheckReply(&handshake.Expect{
		MinVersion: cfg.versionMin, MaxVersion: cfg.versionMax, ClusterID: cfg.ClusterID,
		LocalID: cfg.LocalID, PeerID: p.id, PeerName: p.name,
	}, &reply)
	if err != nil {
		return nil, err
	}
	conn.SetDeadline(time.Time{})
	s := &session{conn: conn, version: v, codec: frame.CodecNone, limits: frame.Limits{
		MaxFrameBytes:  min(cfg.MaxFrameBytes, int(reply.MaxFrameBytes)),
		MaxRecordBytes: min(cfg.MaxRecordBytes, int(reply.MaxRecordBytes)),
	}}
	if reply.Codecs&(1<<want) != 0 {
		s.codec = want
	}
	return s, nil
}

// runLane keeps one lane connected and drains its queue into it.
func (p *peer) runLane(l *outLane) {
	defer p.wg.Done()
	log := p.t.log.With("peer", p.name, "lane", laneName(l.lane))
	bo := p.newBackoff(l.lane)
	quiet := false                     // a non-handshake failure was logged
	lastRefusal := handshake.FieldNone // the handshake refusal last logged
	for p.ctx.Err() == nil {
		s, err := p.connect(l.lane, p.t.cfg.Compression.streamCodec())
		if err == nil {
			log.Debug("connected", "version", s.version, "codec", s.codec)
			bo.reset()
			quiet, lastRefusal = false, handshake.FieldNone
			l.connected.Store(true)
			err = p.stream(l, s)
			l.connected.Store(false)
			p.untrack(s.conn)
		}
		if p.ctx.Err() != nil {
			return
		}
		// Each kind of failure is logged once at Warn/Error, then at debug
		// level on every backoff step until a connection succeeds.
		var me *handshake.MismatchError
		switch {
		case errors.As(err, &me) && me.Field != lastRefusal:
			log.Error("peer refused the handshake", "field", me.Field.String(), "local", me.Local, "remote", me.Remote, "err", err)
			lastRefusal = me.Field
		case errors.As(err, &me) || quiet:
			log.Debug("connection failed", "err", err)
		default:
			log.Warn("connection failed, reconnecting with backoff", "err", err)
			quiet = true
		}
		p.t.cfg.Handler.PeerUnreachable(p.id)
		if err != nil && l.lane != laneSnapshot {
			// Requests forwarded to this peer may have been lost with the
			// connection: their callers learn "unknown" now, not at their
			// deadline.
			p.t.waiters.failPeer(p.id, fmt.Errorf("%w: %v", ErrConnectionLost, err))
		}
		if !p.wait(bo.next()) {
			return
		}
	}
}

// stream writes batches from the lane's queue until the connection fails
// or the peer stops. One record per batch: it takes one item, then drains
// without waiting until the batch reaches MaxBatchBytes (batching with no
// timer: under load batches grow, when idle every message leaves at once).
func (p *peer) stream(l *outLane, s *session) error {
	cfg := &p.t.cfg
	w, err := frame.NewWriter(s.conn, frame.WriterConfig{Limits: s.limits, Codec: s.codec,
		MinCompressBytes: cfg.MinCompressBytes, ZstdLevel: zstd.SpeedFastest})
	if err != nil {
		return err
	}
	defer w.Close()
	w.SetFrameTimeout(s.conn, cfg.WriteTimeout)
	// The acceptor never writes on a stream lane: a read returning means
	// it closed or reset the connection (or broke the protocol). Watching
	// for that notices a dead peer at once instead of at the next write.
	peerGone := make(chan struct{})
	go func() {
		defer close(peerGone)
		var one [1]byte
		s.conn.Read(one[:])
	}()
	defer func() {
		s.conn.Close()
		<-peerGone // the watcher ends once the connection is closed
	}()
	ping := time.NewTicker(cfg.IdleTimeout / 4)
	defer ping.Stop()
	maxBatch := min(cfg.MaxBatchBytes, s.limits.MaxRecordBytes)
	var (
		// Uncompressed, entry data is written from the caller's slices
		// (one writev per frame), never copied; compressed, it must be
		// gathered for the compressor anyway.
		enc     = codec.Encoder{RefMinBytes: refMinBytes(s.codec)}
		held    outItem
		hasHeld bool
		wrote   bool
	)
	defer func() {
		if hasHeld { // lost with the connection, like the batch in flight
			l.queuedBytes.Add(-int64(held.bytes))
		}
	}()
	for {
		var it outItem
		if hasHeld {
			it, hasHeld = held, false
		} else {
			select {
			case <-p.ctx.Done():
				return nil
			case <-peerGone:
				return errors.New("wire: peer closed the connection")
			case <-ping.C:
				if !wrote {
					if err := w.WriteRecord(frame.TypePing, nil); err != nil {
						return err
					}
				}
				wrote = false
				continue
			case it = <-l.q:
			}
		}
		enc.Reset()
		if !p.add(&enc, l, it, s.limits.MaxRecordBytes) {
			continue
		}
	drain:
		for enc.Len() < maxBatch {
			select {
			case it = <-l.q:
				if enc.Len()+it.bytes > s.limits.MaxRecordBytes {
					held, hasHeld = it, true
					break drain
				}
				p.add(&enc, l, it, s.limits.MaxRecordBytes)
			default:
				break drain
			}
		}
		if err := w.WriteSegments(frame.TypeBatch, enc.Segments()); err != nil {
			return err
		}
		enc.Reset() // unpin the entries the batch referenced
		wrote = true
	}
}

// refMinBytes: below this, copying entry data is cheaper than one more
// iovec.
func refMinBytes(c frame.Codec) int {
	if c != frame.CodecNone {
		return 0
	}
	return 1 << 10
}

// add encodes one dequeued item; an item that can never fit a record is
// dropped with a log line (Raft sees a lost message).
func (p *peer) add(enc *codec.Encoder, l *outLane, it outItem, maxRecord int) bool {
	l.queuedBytes.Add(-int64(it.bytes))
	if 4+it.bytes > maxRecord {
		l.dropped.Add(1)
		p.t.log.Error("message larger than the record limit dropped", "peer", p.name, "bytes", it.bytes, "limit", maxRecord, "err", ErrTooLarge)
		return false
	}
	switch it.kind {
	case itemMessage:
		enc.AddMessage(&it.msg)
	case itemForward:
		enc.AddForwardRequest(&it.fwd)
	case itemOutcome:
		enc.AddOutcome(&it.out)
	default:
		panic(fmt.Sprintf("wire: queued item of kind %d", it.kind))
	}
	return true
}
