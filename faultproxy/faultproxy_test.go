package faultproxy

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"
)

// echoServer answers every byte it reads with the same byte.
func echoServer(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() { defer wg.Done(); defer c.Close(); io.Copy(c, c) }()
		}
	}()
	return ln.Addr().String()
}

func startProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	p, err := Start("127.0.0.1:0", target, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func dial(t testing.TB, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// roundTrip writes msg and reads the echo, failing after deadline.
func roundTrip(c net.Conn, msg []byte, deadline time.Duration) ([]byte, error) {
	c.SetDeadline(time.Now().Add(deadline))
	defer c.SetDeadline(time.Time{})
	if _, err := c.Write(msg); err != nil {
		return nil, err
	}
	got := make([]byte, len(msg))
	_, err := io.ReadFull(c, got)
	return got, err
}

func TestForwardsBytesUnchanged(t *testing.T) {
	p := startProxy(t, echoServer(t))
	c := dial(t, p.Addr())
	msg := bytes.Repeat([]byte("edgekv-"), 100_000) // several chunks
	got, err := roundTrip(c, msg, 10*time.Second)
	if err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("echo through proxy: err %v, equal %v", err, bytes.Equal(got, msg))
	}
	st := p.Stats()
	if st.Accepted != 1 || st.BytesForwarded[Forward] != int64(len(msg)) || st.BytesForwarded[Backward] != int64(len(msg)) {
		t.Fatalf("stats %+v, want 1 accepted and %d bytes each way", st, len(msg))
	}
}

// Latency is asserted only as a lower bound: a loaded machine may be slower,
// never faster, so the test cannot flake.
func TestLatencyDelaysBothDirections(t *testing.T) {
	p := startProxy(t, echoServer(t))
	const latency = 30 * time.Millisecond
	p.SetFaults(Faults{Latency: latency})
	c := dial(t, p.Addr())
	for i := 0; i < 3; i++ {
		start := time.Now()
		if _, err := roundTrip(c, []byte("ping"), 10*time.Second); err != nil {
			t.Fatal(err)
		}
		if rtt := time.Since(start); rtt < 2*latency {
			t.Fatalf("round trip %v with one-way latency %v: want at least %v", rtt, latency, 2*latency)
		}
	}
}

func TestStallHoldsBytesAndReleasesThemInOrder(t *testing.T) {
	p := startProxy(t, echoServer(t))
	c := dial(t, p.Addr())
	if _, err := roundTrip(c, []byte("warm"), 5*time.Second); err != nil {
		t.Fatal(err)
	}
	p.SetFaults(Faults{Stalled: [2]bool{Forward: true}})
	var sent []byte
	for i := 0; i < 50; i++ {
		sent = binary.BigEndian.AppendUint32(sent, uint32(i))
	}
	if _, err := c.Write(sent); err != nil {
		t.Fatal(err)
	}
	// Nothing can come back while the forward direction is stalled.
	c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if n, err := c.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read during stall = %d bytes, %v; want a timeout", n, err)
	}
	p.Heal()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	got := make([]byte, len(sent))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("after the stall lifted: %v", err)
	}
	if !bytes.Equal(got, sent) {
		t.Fatal("bytes held during the stall came back changed or out of order")
	}
}

func TestBlockCutsLiveConnectionsAndRefusesNewOnes(t *testing.T) {
	p := startProxy(t, echoServer(t))
	live := dial(t, p.Addr())
	if _, err := roundTrip(live, []byte("x"), 5*time.Second); err != nil {
		t.Fatal(err)
	}
	p.SetFaults(Faults{Blocked: [2]bool{Forward: true}})
	if _, err := roundTrip(live, []byte("y"), 5*time.Second); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("live connection after block: %v, want it cut (not a timeout)", err)
	}
	fresh := dial(t, p.Addr())
	if _, err := roundTrip(fresh, []byte("z"), 5*time.Second); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("new connection during block: %v, want it closed at once", err)
	}
	if st := p.Stats(); st.Refused < 1 || st.Cut < 1 {
		t.Fatalf("stats %+v: want at least one refused and one cut", st)
	}
	p.Heal()
	healed := dial(t, p.Addr())
	if _, err := roundTrip(healed, []byte("back"), 5*time.Second); err != nil {
		t.Fatalf("after heal: %v", err)
	}
}

// Blocking only the backward direction lets connections open and bytes
// reach the target, but nothing comes back: the link dies on the first
// reply, as TCP does when acknowledgements are lost.
func TestBackwardBlockLosesReplies(t *testing.T) {
	target := make(chan []byte, 1)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		b := make([]byte, 5)
		io.ReadFull(c, b)
		target <- b
		c.Write([]byte("reply"))
		io.Copy(io.Discard, c)
	}()
	p := startProxy(t, ln.Addr().String())
	p.SetFaults(Faults{Blocked: [2]bool{Backward: true}})
	c := dial(t, p.Addr())
	if _, err := c.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	select {
	case b := <-target:
		if string(b) != "hello" {
			t.Fatalf("target read %q", b)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("forward bytes did not reach the target")
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := c.Read(make([]byte, 5)); n != 0 || err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("reply through a blocked backward direction: %d bytes, %v; want the link cut", n, err)
	}
}

func TestDropConnectionsThenReconnect(t *testing.T) {
	p := startProxy(t, echoServer(t))
	c := dial(t, p.Addr())
	if _, err := roundTrip(c, []byte("a"), 5*time.Second); err != nil {
		t.Fatal(err)
	}
	p.DropConnections()
	if _, err := roundTrip(c, []byte("b"), 5*time.Second); err == nil {
		t.Fatal("connection survived DropConnections")
	}
	c2 := dial(t, p.Addr())
	if _, err := roundTrip(c2, []byte("c"), 5*time.Second); err != nil {
		t.Fatalf("new connection after drop: %v", err)
	}
}

func TestJitterNeverReorders(t *testing.T) {
	p := startProxy(t, echoServer(t))
	p.SetFaults(Faults{Latency: time.Millisecond, Jitter: 5 * time.Millisecond})
	c := dial(t, p.Addr())
	var sent []byte
	for i := 0; i < 200; i++ {
		msg := binary.BigEndian.AppendUint32(nil, uint32(i))
		sent = append(sent, msg...)
		if _, err := c.Write(msg); err != nil {
			t.Fatal(err)
		}
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	got := make([]byte, len(sent))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, sent) {
		t.Fatal("jittered stream came back out of order")
	}
}

func TestCloseStopsEveryGoroutine(t *testing.T) {
	target := echoServer(t)
	before := runtime.NumGoroutine()
	p, err := Start("127.0.0.1:0", target, 7, nil)
	if err != nil {
		t.Fatal(err)
	}
	p.SetFaults(Faults{Latency: time.Millisecond})
	var conns []net.Conn
	for i := 0; i < 5; i++ {
		c := dial(t, p.Addr())
		if _, err := roundTrip(c, []byte("x"), 5*time.Second); err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	p.SetFaults(Faults{Stalled: [2]bool{true, true}})
	queuedBefore := p.Stats().BytesQueued[Forward]
	for _, c := range conns {
		c.Write([]byte("held"))
	}
	// Close must wake copiers parked on a stall, so wait until every held
	// byte sits in the proxy before closing.
	waitFor(t, "held bytes queued", func() bool {
		return p.Stats().BytesQueued[Forward] == queuedBefore+int64(4*len(conns))
	})
	closed := make(chan error, 1)
	go func() { closed <- p.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close hung with copiers parked on a stall")
	}
	// The echo server's per-connection goroutines end once the proxy's
	// side closes; wait for the count to come back.
	waitFor(t, "goroutines to end", func() bool { return runtime.NumGoroutine() <= before })
}

// waitFor polls cond until it holds, failing the test after a deadline.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(5 * time.Second)
	poll := time.NewTicker(5 * time.Millisecond)
	defer poll.Stop()
	for !cond() {
		select {
		case <-deadline:
			buf := make([]byte, 1<<16)
			t.Fatalf("timed out waiting for %s; goroutines:\n%s", what, buf[:runtime.Stack(buf, true)])
		case <-poll.C:
		}
	}
}
