package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/edgekv/edgekv/consensus/raftmsg"
	"github.com/edgekv/edgekv/wire/codec"
	"github.com/edgekv/edgekv/wire/frame"
)

// Snapshot stream, one per snapshot-lane connection:
//
//	sender                                  receiver
//	SnapBegin: size u64 | batch(MsgSnap)  →
//	SnapChunk: data (≤ chunk size)        →  handler reads it
//	...  (at most window chunks unacked)  ←  SnapAck progress (one per chunk consumed)
//	SnapEnd                               →  handler returns
//	                                      ←  SnapAck done | failed: reason
//
// A broken connection ends the stream on both sides: the receiver's reader
// returns an error (the handler discards what it read), the sender starts
// over from offset 0 on a new connection, up to SnapshotAttempts times.
//
// SnapAck payload: | status u8 | chunks u64 | reasonLen u16 | reason |

const (
	ackProgress uint8 = iota
	ackDone
	ackFailed
	ackStatusCount
	maxAckReasonBytes = 256
)

// snapshotFinishTimeout bounds how long the sender waits for the
// receiver's handler to store a completely received snapshot.
func (c *Config) snapshotFinishTimeout() time.Duration { return 10 * c.IdleTimeout }

// errRefused marks a receiver's verdict: retrying the same bytes will not help.
var errRefused = errors.New("wire: snapshot refused by peer")

func (p *peer) runSnapshots() {
	defer p.wg.Done()
	for {
		select {
		case <-p.ctx.Done():
			return
		case job := <-p.snapJobs:
			err := p.sendSnapshot(job)
			if p.ctx.Err() != nil && err != nil {
				err = fmt.Errorf("%w: %w", errStopped, err)
			}
			p.t.cfg.Handler.SnapshotDone(p.id, job.msg.Snapshot.Index, err)
		}
	}
}

func (p *peer) sendSnapshot(job snapJob) error {
	cfg := &p.t.cfg
	log := p.t.log.With("peer", p.name, "lane", "snapshot", "index", job.msg.Snapshot.Index)
	bo := p.newBackoff(laneSnapshot)
	var err error
	for attempt := 1; attempt <= cfg.SnapshotAttempts; attempt++ {
		var s *session
		s, err = p.connect(laneSnapshot, cfg.Compression.snapshotCodec())
		if err == nil {
			err = p.streamSnapshot(s, job)
			p.untrack(s.conn)
			if err == nil {
				log.Info("snapshot sent", "bytes", job.size, "attempt", attempt)
				return nil
			}
		}
		if p.ctx.Err() != nil || errors.Is(err, errRefused) {
			return err
		}
		log.Warn("snapshot stream failed, restarting from the beginning", "attempt", attempt, "err", err)
		if attempt < cfg.SnapshotAttempts && !p.wait(bo.next()) {
			return errStopped
		}
	}
	return fmt.Errorf("wire: snapshot to %s failed after %d attempts: %w", p.name, cfg.SnapshotAttempts, err)
}

func (p *peer) streamSnapshot(s *session, job snapJob) error {
	cfg := &p.t.cfg
	w, err := frame.NewWriter(s.conn, frame.WriterConfig{Limits: s.limits, Codec: s.codec,
		MinCompressBytes: cfg.MinCompressBytes, ZstdLevel: zstd.SpeedDefault})
	if err != nil {
		return err
	}
	defer w.Close()
	acks, err := frame.NewReader(s.conn, p.t.limits(), p.t.pool)
	if err != nil {
		return err
	}
	defer acks.Close()

	var enc codec.Encoder
	enc.Reset()
	enc.AddMessage(&job.msg)
	begin := binary.LittleEndian.AppendUint64(make([]byte, 0, 8+enc.Len()), uint64(job.size))
	begin = append(begin, enc.Bytes()...)
	if len(begin) > s.limits.MaxRecordBytes {
		return fmt.Errorf("%w: snapshot message of %d bytes", errRefused, len(begin))
	}
	w.SetFrameTimeout(s.conn, cfg.WriteTimeout)
	write := w.WriteRecord
	if err := write(frame.TypeSnapBegin, begin); err != nil {
		return err
	}
	chunk := make([]byte, min(cfg.SnapshotChunkBytes, s.limits.MaxFrameBytes))
	inflight := 0
	for off := int64(0); off < job.size; {
		n := int(min(int64(len(chunk)), job.size-off))
		if got, err := job.data.ReadAt(chunk[:n], off); got != n {
			return fmt.Errorf("%w: reading snapshot at %d: %d of %d bytes: %w", errRefused, off, got, n, err)
		}
		if err := write(frame.TypeSnapChunk, chunk[:n]); err != nil {
			return err
		}
		off += int64(n)
		inflight++
		// Flow control: never more than the window unacknowledged, so a
		// slow receiver (disk-bound) slows the sender, not its memory.
		for inflight >= cfg.SnapshotWindowChunks {
			status, _, err := p.readAck(s.conn, acks, cfg.IdleTimeout)
			if err != nil {
				return err
			}
			if status != ackProgress {
				return fmt.Errorf("%w: stream ended early", errRefused)
			}
			inflight--
		}
	}
	if err := write(frame.TypeSnapEnd, nil); err != nil {
		return err
	}
	for {
		status, reason, err := p.readAck(s.conn, acks, cfg.snapshotFinishTimeout())
		switch {
		case err != nil:
			return err
		case status == ackDone:
			return nil
		case status == ackFailed:
			return fmt.Errorf("%w: %s", errRefused, reason)
		}
	}
}

func (p *peer) readAck(c net.Conn, r *frame.Reader, timeout time.Duration) (uint8, string, error) {
	c.SetReadDeadline(time.Now().Add(timeout))
	typ, buf, err := r.ReadRecord()
	if err != nil {
		return 0, "", fmt.Errorf("wire: reading snapshot ack: %w", err)
	}
	defer buf.Release()
	b := buf.Bytes()
	if typ != frame.TypeSnapAck || len(b) < 11 {
		return 0, "", fmt.Errorf("wire: bad snapshot ack (type %d, %d bytes)", typ, len(b))
	}
	status, n := b[0], int(binary.LittleEndian.Uint16(b[9:]))
	if status >= ackStatusCount || n != len(b)-11 || n > maxAckReasonBytes {
		return 0, "", fmt.Errorf("wire: bad snapshot ack (status %d, reason %d bytes of %d)", status, n, len(b)-11)
	}
	return status, string(b[11:]), nil
}

// serveSnapshot receives one snapshot stream and hands it to the handler.
func (t *Transport) serveSnapshot(c net.Conn, from raftmsg.NodeID, log *slog.Logger) error {
	cfg := &t.cfg
	r, err := frame.NewReader(c, t.limits(), t.pool)
	if err != nil {
		return err
	}
	defer r.Close()
	w, err := frame.NewWriter(c, frame.WriterConfig{Limits: t.limits()})
	if err != nil {
		return err
	}
	defer w.Close()

	c.SetReadDeadline(time.Now().Add(cfg.IdleTimeout))
	typ, buf, err := r.ReadRecord()
	if err != nil {
		return err
	}
	msg, size, err := t.decodeSnapBegin(typ, buf.Bytes(), from)
	buf.Release()
	if err != nil {
		return err
	}
	sr := &snapReader{conn: c, r: r, w: w, remaining: size, idle: cfg.IdleTimeout}
	herr := cfg.Handler.HandleSnapshot(msg, sr)
	if herr == nil && !sr.eof {
		// A handler may stop after exactly the announced size without
		// seeing io.EOF; anything more is an error.
		if n, err := sr.Read(make([]byte, 1)); n != 0 || err != io.EOF {
			herr = errors.New("handler returned before the end of the snapshot")
		}
	}
	sr.release()
	if sr.err != nil { // the stream broke: nobody to answer
		return sr.err
	}
	ack := []byte{ackDone, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	if herr != nil {
		log.Warn("snapshot refused by handler", "err", herr)
		reason := herr.Error()
		if len(reason) > maxAckReasonBytes {
			reason = reason[:maxAckReasonBytes]
		}
		ack[0] = ackFailed
		binary.LittleEndian.PutUint16(ack[9:], uint16(len(reason)))
		ack = append(ack, reason...)
	}
	binary.LittleEndian.PutUint64(ack[1:], sr.chunks)
	c.SetWriteDeadline(time.Now().Add(cfg.WriteTimeout))
	if err := w.WriteRecord(frame.TypeSnapAck, ack); err != nil {
		return err
	}
	log.Info("snapshot received", "index", msg.Snapshot.Index, "bytes", size, "err", herr)
	return nil
}

func (t *Transport) decodeSnapBegin(typ frame.Type, b []byte, from raftmsg.NodeID) (raftmsg.Message, int64, error) {
	if typ != frame.TypeSnapBegin || len(b) < 8 {
		return raftmsg.Message{}, 0, fmt.Errorf("wire: snapshot stream opens with record type %d of %d bytes", typ, len(b))
	}
	size := binary.LittleEndian.Uint64(b)
	if size > 1<<62 {
		return raftmsg.Message{}, 0, fmt.Errorf("wire: snapshot of %d bytes", size)
	}
	bt := t.batches.Get()
	defer bt.Release()
	if err := bt.Decode(b[8:]); err != nil {
		return raftmsg.Message{}, 0, err
	}
	if len(bt.Messages) != 1 || len(bt.Forwards)+len(bt.Outcomes) != 0 {
		return raftmsg.Message{}, 0, fmt.Errorf("wire: snapshot stream opens with %d messages", len(bt.Messages))
	}
	m := bt.Messages[0]
	if m.Type != raftmsg.MsgSnap || m.From != from || m.To != t.cfg.LocalID {
		return raftmsg.Message{}, 0, fmt.Errorf("wire: snapshot stream opens with %s from %#x to %#x", m.Type, uint64(m.From), uint64(m.To))
	}
	// The message outlives the batch: copy what points into it.
	m.Snapshot.Conf.Voters = slices.Clone(m.Snapshot.Conf.Voters)
	m.Snapshot.Conf.Learners = slices.Clone(m.Snapshot.Conf.Learners)
	m.Entries = nil
	return m, int64(size), nil
}

// snapReader is the io.Reader a HandleSnapshot sees: it yields the chunks
// of the stream, acknowledging each once consumed, then io.EOF after
// SnapEnd.
type snapReader struct {
	conn      net.Conn
	r         *frame.Reader
	w         *frame.Writer
	idle      time.Duration
	remaining int64
	cur       []byte
	buf       interface{ Release() }
	chunks    uint64
	eof       bool
	err       error
}

func (s *snapReader) Read(p []byte) (int, error) {
	for len(s.cur) == 0 {
		if s.err != nil {
			return 0, s.err
		}
		if s.eof {
			return 0, io.EOF
		}
		if s.buf != nil {
			s.release()
			s.chunks++
			ack := make([]byte, 11)
			binary.LittleEndian.PutUint64(ack[1:], s.chunks)
			s.conn.SetWriteDeadline(time.Now().Add(s.idle))
			if err := s.w.WriteRecord(frame.TypeSnapAck, ack); err != nil {
				s.err = fmt.Errorf("wire: snapshot ack: %w", err)
				continue
			}
		}
		s.conn.SetReadDeadline(time.Now().Add(s.idle))
		typ, buf, err := s.r.ReadRecord()
		if err != nil {
			s.err = fmt.Errorf("wire: snapshot stream broke: %w", noEOF(err))
			continue
		}
		switch {
		case typ == frame.TypeSnapEnd && s.remaining == 0 && len(buf.Bytes()) == 0:
			buf.Release()
			s.eof = true
		case typ == frame.TypeSnapChunk && len(buf.Bytes()) > 0 && int64(len(buf.Bytes())) <= s.remaining:
			s.buf, s.cur = buf, buf.Bytes()
			s.remaining -= int64(len(s.cur))
		default:
			s.err = fmt.Errorf("wire: snapshot stream: record type %d of %d bytes with %d bytes left", typ, len(buf.Bytes()), s.remaining)
			buf.Release()
		}
	}
	n := copy(p, s.cur)
	s.cur = s.cur[n:]
	return n, nil
}

func (s *snapReader) release() {
	if s.buf != nil {
		s.buf.Release()
		s.buf, s.cur = nil, nil
	}
}

func noEOF(err error) error {
	if errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}
