package wire

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/edgekv/edgekv/consensus/raftmsg"
	"github.com/edgekv/edgekv/wire/codec"
	"github.com/edgekv/edgekv/wire/frame"
)

// FuzzInboundStream feeds arbitrary bytes to the receive path of a
// handshaken stream connection (frames, decompression, batch decoding,
// sender checks): it must end with an error or EOF, never panic or hang,
// and release every buffer it took.
func FuzzInboundStream(f *testing.F) {
	var enc codec.Encoder
	enc.Reset()
	m := raftmsg.Message{Type: raftmsg.MsgApp, From: 1, To: 2, Entries: []raftmsg.Entry{{Data: bytes.Repeat([]byte("abc"), 500)}}}
	enc.AddMessage(&m)
	enc.AddForwardRequest(&codec.ForwardRequest{Op: codec.ForwardPropose, RequestID: 1, Payload: []byte("x")})
	enc.AddOutcome(&codec.Outcome{RequestID: 1, Status: codec.StatusCommitted})
	for _, c := range []frame.Codec{frame.CodecNone, frame.CodecSnappy, frame.CodecZstd} {
		var out bytes.Buffer
		w, _ := frame.NewWriter(&out, frame.WriterConfig{Limits: frame.Limits{MaxFrameBytes: 1024, MaxRecordBytes: 1 << 16}, Codec: c, MinCompressBytes: 1})
		w.WriteRecord(frame.TypePing, nil)
		w.WriteRecord(frame.TypeBatch, enc.Bytes())
		w.Close()
		f.Add(out.Bytes())
	}
	rec := newRecorder(f)
	tr, err := NewTransport(Config{LocalID: 2, LocalName: "n2", ListenAddr: "127.0.0.1:0", Handler: rec,
		MaxFrameBytes: 64 << 10, MaxRecordBytes: 256 << 10, MaxBatchBytes: 64 << 10, SnapshotChunkBytes: 32 << 10, IdleTimeout: time.Second})
	if err != nil {
		f.Fatal(err)
	}
	defer tr.Close()
	f.Fuzz(func(t *testing.T, data []byte) {
		client, server := net.Pipe()
		go func() {
			client.Write(data)
			client.Close()
		}()
		err := tr.serveStream(server, 1)
		server.Close()
		if err == nil {
			t.Fatal("serveStream returned without error")
		}
		for {
			select {
			case <-rec.msgs:
				continue
			case <-rec.forwards:
				continue
			default:
			}
			break
		}
		if n := tr.pool.Outstanding(); n != 0 {
			t.Fatalf("%d receive buffers not released", n)
		}
	})
}

func TestCompressionLanes(t *testing.T) {
	for _, tc := range []struct {
		c              Compression
		stream, snapsh frame.Codec
	}{
		{CompressionAuto, frame.CodecSnappy, frame.CodecZstd},
		{CompressionNone, frame.CodecNone, frame.CodecNone},
		{CompressionSnappy, frame.CodecSnappy, frame.CodecSnappy},
		{CompressionZstd, frame.CodecZstd, frame.CodecZstd},
	} {
		if tc.c.streamCodec() != tc.stream || tc.c.snapshotCodec() != tc.snapsh {
			t.Errorf("%s: stream %s snapshot %s, want %s %s", tc.c, tc.c.streamCodec(), tc.c.snapshotCodec(), tc.stream, tc.snapsh)
		}
	}
}

func TestForwardEndsOnClose(t *testing.T) {
	leader, follower := pair(t, nil)
	done := make(chan error, 1)
	go func() {
		_, err := follower.Forward(context.Background(), 1, ForwardRequest{Op: ForwardReadIndex, RequestID: 3})
		done <- err
	}()
	recv(t, leader.rec.forwards, "the forwarded request") // so it is in flight
	follower.Close()
	if err := recv(t, done, "Forward to return"); !errors.Is(err, ErrClosed) {
		t.Fatalf("got %v, want ErrClosed", err)
	}
}

// FuzzInboundSnapshot feeds arbitrary bytes to the receive path of a
// handshaken snapshot connection: no panic, no hang, every buffer
// released, and the handler never sees more bytes than announced.
func FuzzInboundSnapshot(f *testing.F) {
	var enc codec.Encoder
	enc.Reset()
	m := raftmsg.Message{Type: raftmsg.MsgSnap, From: 1, To: 2, Snapshot: raftmsg.SnapshotMeta{Index: 3, Conf: raftmsg.ConfState{Voters: []raftmsg.NodeID{1, 2}}}}
	enc.AddMessage(&m)
	var out bytes.Buffer
	w, _ := frame.NewWriter(&out, frame.WriterConfig{Limits: frame.Limits{MaxFrameBytes: 1024, MaxRecordBytes: 1 << 16}, Codec: frame.CodecSnappy, MinCompressBytes: 1})
	w.WriteRecord(frame.TypeSnapBegin, append([]byte{10, 0, 0, 0, 0, 0, 0, 0}, enc.Bytes()...))
	w.WriteRecord(frame.TypeSnapChunk, []byte("01234"))
	w.WriteRecord(frame.TypeSnapChunk, []byte("56789"))
	w.WriteRecord(frame.TypeSnapEnd, nil)
	w.Close()
	f.Add(out.Bytes())

	rec := newRecorder(f)
	announced := make(chan int64, 1)
	rec.setOnSnap(func(msg raftmsg.Message, r io.Reader) error {
		n, err := io.Copy(io.Discard, r)
		if err == nil {
			announced <- n
		}
		return err
	})
	tr, err := NewTransport(Config{LocalID: 2, LocalName: "n2", ListenAddr: "127.0.0.1:0", Handler: rec,
		MaxFrameBytes: 64 << 10, MaxRecordBytes: 256 << 10, MaxBatchBytes: 64 << 10, SnapshotChunkBytes: 32 << 10, IdleTimeout: time.Second})
	if err != nil {
		f.Fatal(err)
	}
	defer tr.Close()
	f.Fuzz(func(t *testing.T, data []byte) {
		client, server := net.Pipe()
		go io.Copy(io.Discard, client) // acks
		go func() {
			client.Write(data)
			client.Close()
		}()
		tr.serveSnapshot(server, 1, tr.log)
		server.Close()
		select {
		case n := <-announced:
			if n > int64(len(data)) {
				t.Fatalf("handler read %d bytes from %d input bytes", n, len(data))
			}
		default:
		}
		if n := tr.pool.Outstanding(); n != 0 {
			t.Fatalf("%d receive buffers not released", n)
		}
	})
}

// TestEntryBeyondRecordLimitIsDroppedAndLogged: a message that can never
// fit the peer's record limit is dropped with a log line (Raft sees a lost
// message), and the lane keeps working.
func TestEntryBeyondRecordLimitIsDroppedAndLogged(t *testing.T) {
	a, b := pair(t, func(c *Config) {
		c.MaxFrameBytes = 64 << 10
		c.MaxRecordBytes = 256 << 10
		c.MaxBatchBytes = 64 << 10
		c.SnapshotChunkBytes = 32 << 10
	})
	huge := raftmsg.Message{Type: raftmsg.MsgApp, From: 1, To: 2, Entries: []raftmsg.Entry{{Data: make([]byte, 300<<10)}}}
	if !a.Send(huge) {
		t.Fatal("an oversized message must pass an empty queue")
	}
	a.logs.waitLog(t, "larger than the record limit")
	a.Send(raftmsg.Message{Type: raftmsg.MsgApp, From: 1, To: 2, Index: 7})
	if m := recv(t, b.rec.msgs, "the next append"); m.Index != 7 {
		t.Fatalf("got %+v", m)
	}
}

// TestForwardFailsFastWhenConnectionBreaks: a forward in flight ends with
// ErrConnectionLost (outcome unknown) as soon as the connection to the
// leader breaks, not at its deadline.
func TestForwardFailsFastWhenConnectionBreaks(t *testing.T) {
	leader, follower := pair(t, nil)
	px := newProxy(t, leader.Addr().String())
	if err := follower.AddPeer(1, "n1", px.addr()); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		o, err := follower.Forward(context.Background(), 1, ForwardRequest{Op: ForwardPropose, RequestID: 4, Payload: []byte("p")})
		if o.Status != StatusUnknown {
			err = errors.New("status " + o.Status.String())
		}
		done <- err
	}()
	recv(t, leader.rec.forwards, "the forwarded request") // in flight, never answered
	px.cut()
	if err := recv(t, done, "Forward to end"); !errors.Is(err, ErrConnectionLost) {
		t.Fatalf("got %v, want ErrConnectionLost", err)
	}
}
