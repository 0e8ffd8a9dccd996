package cluster

import (
	"bytes"
	"io"
	"net"
	"testing"
	"time"

	"github.com/edgekv/edgekv/wire/handshake"
)

// helloFrom dials addr, sends a Hello naming sender, and reports whether
// the Hello came back (the proxies' target is an echo server).
func helloFrom(t *testing.T, addr, sender string) bool {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(time.Second))
	var sent bytes.Buffer
	h := handshake.Hello{MinVersion: 1, MaxVersion: 1, ClusterID: 7, SenderID: 1, ReceiverID: 2, SenderName: sender, ReceiverName: "n1"}
	if err := handshake.Write(io.MultiWriter(conn, &sent), &h); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, sent.Len())
	if _, err := io.ReadFull(conn, got); err != nil {
		return false
	}
	return bytes.Equal(got, sent.Bytes())
}

func TestRouterSplicesIntoTheSendersLink(t *testing.T) {
	c := proxiesOnly(t, 3)
	byName := map[string]int{"n1": 0, "n2": 1, "n3": 2}
	r, err := startRouter(0, byName, func(from int) string { return c.Link(from, 0).Addr() })
	if err != nil {
		t.Fatal(err)
	}
	defer r.close()

	if !helloFrom(t, r.addr(), "n2") {
		t.Fatal("n2's Hello did not pass through")
	}
	if a := c.Link(1, 0).Stats().Accepted; a != 1 {
		t.Fatalf("link n2->n1 accepted %d connections, want 1", a)
	}
	if a := c.Link(2, 0).Stats().Accepted; a != 0 {
		t.Fatalf("link n3->n1 accepted %d connections, want 0", a)
	}
	// A fault on n2->n1 applies to n2's connections only.
	c.CutOneWay(1, 0)
	if helloFrom(t, r.addr(), "n2") {
		t.Fatal("n2's Hello passed a cut link")
	}
	if !helloFrom(t, r.addr(), "n3") {
		t.Fatal("n3's Hello did not pass through")
	}
	// Unknown senders and the target itself are never forwarded.
	for _, name := range []string{"stranger", "n1"} {
		if helloFrom(t, r.addr(), name) {
			t.Fatalf("a Hello from %q was forwarded", name)
		}
	}
	// Bytes that are not a Hello are never forwarded.
	conn, err := net.Dial("tcp", r.addr())
	if err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(time.Second))
	conn.Write([]byte("GET / HTTP/1.1\r\n\r\n"))
	if n, _ := conn.Read(make([]byte, 16)); n != 0 {
		t.Fatal("garbage got an answer")
	}
	conn.Close()
	if a := c.Link(1, 0).Stats().Accepted + c.Link(2, 0).Stats().Accepted; a != 2 {
		t.Fatalf("links accepted %d connections, want 2", a)
	}
}
