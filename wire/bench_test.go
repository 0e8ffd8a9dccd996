package wire

import (
	"io"
	"net"
	"testing"
	"time"

	"github.com/edgekv/edgekv/consensus/raftmsg"
	"github.com/edgekv/edgekv/wire/codec"
)

// countingHandler releases every batch and frees one window slot per
// message, so the benchmark's sender keeps a bounded number in flight.
type countingHandler struct {
	window chan struct{}
}

func (h *countingHandler) HandleBatch(b *Batch) {
	for range b.Messages {
		<-h.window
	}
	b.Release()
}
func (h *countingHandler) HandleSnapshot(raftmsg.Message, io.Reader) error { return nil }
func (h *countingHandler) PeerUnreachable(raftmsg.NodeID)                  {}
func (h *countingHandler) SnapshotDone(raftmsg.NodeID, uint64, error)      {}

// rawLoopback writes total bytes in chunks of chunkBytes over one loopback
// TCP connection to a reader with a 64 KiB buffer, and returns how long
// the receiver took to get them all.
func rawLoopback(b *testing.B, total int64, chunkBytes int) time.Duration {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	done := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		defer c.Close()
		buf := make([]byte, 64<<10)
		var got int64
		for got < total {
			n, err := c.Read(buf)
			got += int64(n)
			if err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	chunk := make([]byte, chunkBytes)
	start := time.Now()
	for sent := int64(0); sent < total; {
		n := int(min(int64(chunkBytes), total-sent))
		if _, err := c.Write(chunk[:n]); err != nil {
			b.Fatal(err)
		}
		sent += int64(n)
	}
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	return time.Since(start)
}

// BenchmarkAppendStream measures the append lane over loopback: one op is
// one MsgApp of entriesPerMsg entries of 4 KiB, sent with Send and
// received, decoded and released by the handler (compression off: the
// entries are incompressible in practice). The same number of bytes is
// first pushed through a raw loopback TCP connection, and the ratio of the
// two throughputs is reported (raw-ratio; the aim is >= 0.8).
func BenchmarkAppendStream(b *testing.B) {
	const entryBytes, entriesPerMsg = 4 << 10, 16
	data := make([]byte, entryBytes)
	for i := range data {
		data[i] = byte(i * 31)
	}
	msg := raftmsg.Message{Type: raftmsg.MsgApp, From: 1, To: 2, Term: 1}
	for i := range entriesPerMsg {
		msg.Entries = append(msg.Entries, raftmsg.Entry{Term: 1, Index: uint64(i + 1), Data: data})
	}
	msgBytes := codec.MessageBytes(&msg)

	// Raw TCP writes the same bytes in 1 MiB chunks (the transport's batch
	// size), the best case for plain loopback TCP.
	raw := rawLoopback(b, int64(b.N)*int64(msgBytes), DefaultMaxBatchBytes)

	h := &countingHandler{window: make(chan struct{}, 256)}
	mk := func(id raftmsg.NodeID, name string) *Transport {
		tr, err := NewTransport(Config{LocalID: id, LocalName: name, ClusterID: 1, ListenAddr: "127.0.0.1:0",
			Handler: h, Compression: CompressionNone, AppendQueueLen: 512})
		if err != nil {
			b.Fatal(err)
		}
		return tr
	}
	a, r := mk(1, "n1"), mk(2, "n2")
	defer a.Close()
	defer r.Close()
	a.AddPeer(2, "n2", r.Addr().String())
	r.AddPeer(1, "n1", a.Addr().String())
	// Warm up: connect and fill the pools.
	for range 64 {
		h.window <- struct{}{}
		for !a.Send(msg) {
		}
	}
	for range cap(h.window) {
		h.window <- struct{}{}
	}
	for range cap(h.window) {
		<-h.window
	}

	b.SetBytes(int64(msgBytes))
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		h.window <- struct{}{} // at most cap(window) messages in flight
		if !a.Send(msg) {
			b.Fatal("append queue full with a bounded window")
		}
	}
	for range cap(h.window) { // wait until the handler has seen everything
		h.window <- struct{}{}
	}
	elapsed := time.Since(start)
	b.StopTimer()
	for range cap(h.window) {
		<-h.window
	}
	mbps := float64(b.N) * float64(msgBytes) / elapsed.Seconds() / 1e6
	rawMBps := float64(b.N) * float64(msgBytes) / raw.Seconds() / 1e6
	b.ReportMetric(float64(b.N*entriesPerMsg)/elapsed.Seconds(), "entries/s")
	b.ReportMetric(rawMBps, "raw-MB/s")
	b.ReportMetric(mbps/rawMBps, "raw-ratio")
}
