package wire

import (
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/edgekv/edgekv/consensus/raftmsg"
	"github.com/edgekv/edgekv/wire/frame"
	"github.com/edgekv/edgekv/wire/handshake"
)

// maxInboundConns bounds accepted connections: a lane each way per peer
// fits many times over, a flood of strangers does not.
const maxInboundConns = 1024

func (t *Transport) acceptLoop() {
	defer t.wg.Done()
	for {
		c, err := t.ln.Accept()
		if err != nil {
			if t.closed() {
				return
			}
			t.log.Warn("accept failed", "err", err)
			timer := time.NewTimer(10 * time.Millisecond) // bounded retry rate on e.g. EMFILE
			select {
			case <-timer.C:
			case <-t.stop:
				timer.Stop()
				return
			}
			continue
		}
		t.mu.Lock()
		switch {
		case t.mu.closed:
			t.mu.Unlock()
			c.Close()
			return
		case len(t.mu.inbound) >= maxInboundConns:
			t.mu.Unlock()
			t.log.Warn("too many inbound connections, refusing", "remote", c.RemoteAddr().String(), "limit", maxInboundConns)
			c.Close()
			continue
		}
		t.mu.inbound[c] = raftmsg.None
		t.wg.Add(1)
		t.mu.Unlock()
		go t.serveConn(c)
	}
}

func (t *Transport) serveConn(c net.Conn) {
	defer t.wg.Done()
	defer func() {
		t.mu.Lock()
		delete(t.mu.inbound, c)
		t.mu.Unlock()
		c.Close()
	}()
	log := t.log.With("remote", c.RemoteAddr().String())
	hello, lane, ok := t.acceptHandshake(c, log)
	if !ok {
		return
	}
	t.mu.Lock()
	if _, open := t.mu.inbound[c]; !open || t.mu.closed {
		t.mu.Unlock()
		return
	}
	t.mu.inbound[c] = hello.SenderID
	t.mu.Unlock()
	if t.peer(hello.SenderID) == nil { // removed while we shook hands
		return
	}
	log = log.With("peer", hello.SenderName, "lane", laneName(lane))
	var err error
	if lane == laneSnapshot {
		err = t.serveSnapshot(c, hello.SenderID, log)
	} else {
		err = t.serveStream(c, hello.SenderID)
	}
	switch {
	case err == nil, t.closed(), errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed):
		log.Debug("inbound connection closed", "err", err)
	default:
		log.Warn("inbound connection failed", "err", err)
	}
}

// acceptHandshake reads the dialer's Hello within HandshakeTimeout, checks
// it and answers; a mismatch is logged with the field that differed.
func (t *Transport) acceptHandshake(c net.Conn, log interface {
	Warn(string, ...any)
	Error(string, ...any)
}) (handshake.Hello, uint8, bool) {
	cfg := &t.cfg
	c.SetDeadline(time.Now().Add(cfg.HandshakeTimeout))
	hello, err := handshake.Read(c)
	if err != nil {
		log.Warn("handshake failed", "err", err)
		return hello, 0, false
	}
	v, err := handshake.CheckHello(&t.local, &hello)
	reply := handshake.Hello{
		MinVersion: v, MaxVersion: v, ClusterID: cfg.ClusterID, Lane: hello.Lane, Codecs: supportedCodecs,
		SenderID: cfg.LocalID, ReceiverID: hello.SenderID,
		MaxFrameBytes: uint32(cfg.MaxFrameBytes), MaxRecordBytes: uint32(cfg.MaxRecordBytes),
		SenderName: cfg.LocalName, ReceiverName: hello.SenderName,
	}
	if err != nil {
		var me *handshake.MismatchError
		if errors.As(err, &me) {
			reply.Status, reply.Field = handshake.StatusMismatch, me.Field
			log.Error("refusing peer: handshake mismatch", "field", me.Field.String(), "local", me.Local, "remote", me.Remote, "sender", hello.SenderName)
		} else {
			log.Error("refusing peer", "err", err)
		}
		reply.MinVersion, reply.MaxVersion = cfg.versionMax, cfg.versionMax
		if len(reply.ReceiverName) > handshake.MaxNameBytes {
			reply.ReceiverName = ""
		}
		handshake.Write(c, &reply) // best effort: the dialer logs the field too
		return hello, 0, false
	}
	if err := handshake.Write(c, &reply); err != nil {
		log.Warn("handshake reply failed", "err", err)
		return hello, 0, false
	}
	c.SetDeadline(time.Time{})
	return hello, hello.Lane, true
}

func (t *Transport) limits() frame.Limits {
	return frame.Limits{MaxFrameBytes: t.cfg.MaxFrameBytes, MaxRecordBytes: t.cfg.MaxRecordBytes}
}

// serveStream reads batches from a control or append connection and hands
// them to the handler. Every record must arrive within IdleTimeout (the
// dialer pings when it has nothing to say).
func (t *Transport) serveStream(c net.Conn, from raftmsg.NodeID) error {
	r, err := frame.NewReader(c, t.limits(), t.pool)
	if err != nil {
		return err
	}
	defer r.Close()
	r.SetFrameTimeout(c, t.cfg.IdleTimeout)
	for {
		typ, buf, err := r.ReadRecord()
		if err != nil {
			return err
		}
		switch typ {
		case frame.TypePing:
			buf.Release()
		case frame.TypeBatch:
			b := t.batches.Get()
			if err := b.DecodeBuffer(buf); err != nil {
				b.Release()
				return err
			}
			for i := range b.Messages {
				if m := &b.Messages[i]; m.From != from || m.To != t.cfg.LocalID {
					b.Release()
					return fmt.Errorf("wire: message from %#x to %#x on the connection from %#x to %#x", uint64(m.From), uint64(m.To), uint64(from), uint64(t.cfg.LocalID))
				}
			}
			b.From = from
			for _, o := range b.Outcomes {
				t.waiters.deliver(from, o)
			}
			clear(b.Outcomes)
			b.Outcomes = b.Outcomes[:0]
			if len(b.Messages)+len(b.Forwards) == 0 {
				b.Release()
				continue
			}
			t.cfg.Handler.HandleBatch(b)
		default:
			buf.Release()
			return fmt.Errorf("wire: unexpected record type %d on a stream lane", typ)
		}
	}
}
