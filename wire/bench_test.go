package wire

import (
	"io"
	"math/rand/v2"
	"net"
	"syscall"
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

// rawLink is one loopback TCP connection with a reader that discards
// into a 64 KiB buffer: the baseline the transport is compared with.
type rawLink struct {
	c     net.Conn
	ln    net.Listener
	chunk []byte
	got   chan int64 // the reader reports each completed push
	want  chan int64
}

func newRawLink(b *testing.B, chunkBytes int) *rawLink {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	r := &rawLink{ln: ln, chunk: make([]byte, chunkBytes), got: make(chan int64), want: make(chan int64)}
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		buf := make([]byte, 64<<10)
		for total := range r.want {
			var n int64
			for n < total {
				k, err := c.Read(buf)
				n += int64(k)
				if err != nil {
					r.got <- -1
					return
				}
			}
			r.got <- n
		}
	}()
	if r.c, err = net.Dial("tcp", ln.Addr().String()); err != nil {
		b.Fatal(err)
	}
	return r
}

// push sends total bytes and returns when the reader has them all.
func (r *rawLink) push(b *testing.B, total int64) time.Duration {
	start := time.Now()
	r.want <- total
	for sent := int64(0); sent < total; {
		n := int(min(int64(len(r.chunk)), total-sent))
		if _, err := r.c.Write(r.chunk[:n]); err != nil {
			b.Fatal(err)
		}
		sent += int64(n)
	}
	if n := <-r.got; n != total {
		b.Fatalf("raw link delivered %d of %d bytes", n, total)
	}
	return time.Since(start)
}

func (r *rawLink) close() {
	close(r.want)
	r.c.Close()
	r.ln.Close()
}

// BenchmarkAppendStream measures the append lane over loopback: one op is
// one MsgApp of entriesPerMsg entries of 4 KiB, sent with Send and
// received, decoded and released by the handler (compression off: the
// entries are incompressible in practice). The same number of bytes is
// first pushed through a raw loopback TCP connection, and the ratio of the
// two throughputs is reported (raw-ratio; the aim is >= 0.8).
func BenchmarkAppendStream(b *testing.B) {
	const entryBytes, entriesPerMsg = 4 << 10, 16
	data := make([]byte, entryBytes) // incompressible, like most values
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	msg := raftmsg.Message{Type: raftmsg.MsgApp, From: 1, To: 2, Term: 1}
	for i := range entriesPerMsg {
		msg.Entries = append(msg.Entries, raftmsg.Entry{Term: 1, Index: uint64(i + 1), Data: data})
	}
	msgBytes := codec.MessageBytes(&msg)

	// Raw TCP writes the same bytes in 1 MiB chunks (the transport's batch
	// size), the best case for plain loopback TCP. Raw and transport runs
	// alternate in rounds so that both see the same load on a shared
	// machine.
	raw := newRawLink(b, DefaultMaxBatchBytes)
	defer raw.close()
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
	const rounds = 8
	var elapsed, rawElapsed, cpu, rawCPU time.Duration
	for round := range rounds {
		n := b.N / rounds
		if round == rounds-1 {
			n = b.N - n*(rounds-1)
		}
		b.StopTimer()
		c0 := processCPU()
		rawElapsed += raw.push(b, int64(n)*int64(msgBytes))
		rawCPU += processCPU() - c0
		b.StartTimer()
		c0 = processCPU()
		start := time.Now()
		for range n {
			h.window <- struct{}{} // at most cap(window) messages in flight
			if !a.Send(msg) {
				b.Fatal("append queue full with a bounded window")
			}
		}
		for range cap(h.window) { // wait until the handler has seen everything
			h.window <- struct{}{}
		}
		elapsed += time.Since(start)
		cpu += processCPU() - c0
		for range cap(h.window) {
			<-h.window
		}
	}
	b.StopTimer()
	mbps := float64(b.N) * float64(msgBytes) / elapsed.Seconds() / 1e6
	rawMBps := float64(b.N) * float64(msgBytes) / rawElapsed.Seconds() / 1e6
	b.ReportMetric(float64(b.N*entriesPerMsg)/elapsed.Seconds(), "entries/s")
	b.ReportMetric(rawMBps, "raw-MB/s")
	b.ReportMetric(mbps/rawMBps, "raw-ratio")
	// CPU per MB moved (sender, receiver and kernel of this process), for
	// both: robust to other load on the machine, unlike wall-clock MB/s.
	mb := float64(b.N) * float64(msgBytes) / 1e6
	b.ReportMetric(cpu.Seconds()*1e3/mb, "cpu-ms/MB")
	b.ReportMetric(rawCPU.Seconds()*1e3/mb, "raw-cpu-ms/MB")
}

// processCPU is the user+system CPU time this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
