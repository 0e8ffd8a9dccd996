package wire

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgekv/edgekv/consensus/raftmsg"
)

// waitTimeout bounds every wait in these tests; nothing sleeps.
const waitTimeout = 10 * time.Second

// recorder is a Handler that copies what it receives onto channels.
type recorder struct {
	t         testing.TB
	msgs      chan raftmsg.Message
	forwards  chan fwdFrom
	unreach   chan raftmsg.NodeID
	snapDone  chan error
	snapshots chan []byte

	mu      sync.Mutex                                   // guards the hooks, set by tests while connections run
	onBatch func(b *Batch) bool                          // optional: return true when it took the batch
	onSnap  func(msg raftmsg.Message, r io.Reader) error // optional
}

func (r *recorder) setOnBatch(f func(b *Batch) bool) { r.mu.Lock(); r.onBatch = f; r.mu.Unlock() }
func (r *recorder) setOnSnap(f func(raftmsg.Message, io.Reader) error) {
	r.mu.Lock()
	r.onSnap = f
	r.mu.Unlock()
}

type fwdFrom struct {
	from raftmsg.NodeID
	req  ForwardRequest
}

func newRecorder(t testing.TB) *recorder {
	return &recorder{t: t, msgs: make(chan raftmsg.Message, 100000), forwards: make(chan fwdFrom, 1000),
		unreach: make(chan raftmsg.NodeID, 100000), snapDone: make(chan error, 10), snapshots: make(chan []byte, 10)}
}

func cloneMessage(m raftmsg.Message) raftmsg.Message {
	m.Entries = slices.Clone(m.Entries)
	for i := range m.Entries {
		m.Entries[i].Data = bytes.Clone(m.Entries[i].Data)
	}
	m.Snapshot.Conf.Voters = slices.Clone(m.Snapshot.Conf.Voters)
	m.Snapshot.Conf.Learners = slices.Clone(m.Snapshot.Conf.Learners)
	return m
}

func (r *recorder) HandleBatch(b *Batch) {
	r.mu.Lock()
	onBatch := r.onBatch
	r.mu.Unlock()
	if onBatch != nil && onBatch(b) {
		return
	}
	for _, m := range b.Messages {
		r.msgs <- cloneMessage(m)
	}
	for _, f := range b.Forwards {
		f.Payload = bytes.Clone(f.Payload)
		r.forwards <- fwdFrom{b.From, f}
	}
	b.Release()
}

func (r *recorder) HandleSnapshot(msg raftmsg.Message, data io.Reader) error {
	r.mu.Lock()
	onSnap := r.onSnap
	r.mu.Unlock()
	if onSnap != nil {
		return onSnap(msg, data)
	}
	b, err := io.ReadAll(data)
	if err != nil {
		return err
	}
	r.snapshots <- b
	return nil
}

func (r *recorder) PeerUnreachable(id raftmsg.NodeID) {
	select {
	case r.unreach <- id:
	default:
	}
}

func (r *recorder) SnapshotDone(to raftmsg.NodeID, index uint64, err error) { r.snapDone <- err }

func recv[T any](t testing.TB, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(waitTimeout):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

// logSink is a slog.Handler that forwards every record's text to a channel,
// so tests wait on log lines instead of sleeping.
type logSink struct {
	lines chan string
	attrs []slog.Attr
}

func newLogSink() *logSink { return &logSink{lines: make(chan string, 10000)} }

func (s *logSink) Enabled(context.Context, slog.Level) bool { return true }
func (s *logSink) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(r.Message)
	for _, a := range s.attrs {
		b.WriteString(" " + a.String())
	}
	r.Attrs(func(a slog.Attr) bool { b.WriteString(" " + a.String()); return true })
	select {
	case s.lines <- b.String():
	default:
	}
	return nil
}
func (s *logSink) WithAttrs(as []slog.Attr) slog.Handler {
	return &logSink{lines: s.lines, attrs: append(slices.Clone(s.attrs), as...)}
}
func (s *logSink) WithGroup(string) slog.Handler { return s }

// waitLog waits for a log line containing every one of parts.
func (s *logSink) waitLog(t testing.TB, parts ...string) string {
	t.Helper()
	deadline := time.After(waitTimeout)
	for {
		select {
		case l := <-s.lines:
			ok := true
			for _, p := range parts {
				ok = ok && strings.Contains(l, p)
			}
			if ok {
				return l
			}
		case <-deadline:
			t.Fatalf("no log line containing %q", parts)
		}
	}
}

// node is one transport under test.
type node struct {
	*Transport
	rec  *recorder
	logs *logSink
}

func testConfig(id raftmsg.NodeID, name string) Config {
	return Config{
		LocalID: id, LocalName: name, ClusterID: 0xC1, ListenAddr: "127.0.0.1:0",
		HandshakeTimeout: 2 * time.Second, IdleTimeout: 5 * time.Second,
		BackoffBase: 5 * time.Millisecond, BackoffMax: 50 * time.Millisecond,
		ControlQueueLen: 1024, AppendQueueLen: 1024, Seed: uint64(id),
	}
}

func startNode(t testing.TB, cfg Config) *node {
	t.Helper()
	n := &node{rec: newRecorder(t), logs: newLogSink()}
	if cfg.Handler == nil {
		cfg.Handler = n.rec
	}
	cfg.Logger = slog.New(n.logs)
	tr, err := NewTransport(cfg)
	if err != nil {
		t.Fatal(err)
	}
	n.Transport = tr
	t.Cleanup(func() { tr.Close() })
	return n
}

// pair starts two nodes that know each other.
func pair(t testing.TB, edit func(c *Config)) (*node, *node) {
	t.Helper()
	c1, c2 := testConfig(1, "n1"), testConfig(2, "n2")
	if edit != nil {
		edit(&c1)
		edit(&c2)
	}
	a, b := startNode(t, c1), startNode(t, c2)
	if err := a.AddPeer(2, "n2", b.Addr().String()); err != nil {
		t.Fatal(err)
	}
	if err := b.AddPeer(1, "n1", a.Addr().String()); err != nil {
		t.Fatal(err)
	}
	return a, b
}

// proxy forwards loopback TCP connections and can cut them all, to break
// connections in the middle of a stream.
type proxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	conns  []net.Conn
	wg     sync.WaitGroup
}

func newProxy(t testing.TB, target string) *proxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: target}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			d, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, d)
			p.mu.Unlock()
			p.wg.Add(2)
			go func() { defer p.wg.Done(); io.Copy(d, c); d.Close() }()
			go func() { defer p.wg.Done(); io.Copy(c, d); c.Close() }()
		}
	}()
	t.Cleanup(func() { p.ln.Close(); p.cut(); p.wg.Wait() })
	return p
}

func (p *proxy) addr() string { return p.ln.Addr().String() }

func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}
