package cluster

import (
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/edgekv/edgekv/faultproxy"
)

// proxiesOnly builds a Cluster of n members without processes: every link
// is a real proxy to one echo listener, so the tests can observe which
// links a fault cuts.
func proxiesOnly(t *testing.T, n int) *Cluster {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer conn.Close(); io.Copy(conn, conn) }()
		}
	}()
	c := &Cluster{links: make([][]*faultproxy.Proxy, n)}
	for i := range n {
		c.nodes = append(c.nodes, &Node{Name: fmt.Sprintf("n%d", i+1), Index: i})
		c.links[i] = make([]*faultproxy.Proxy, n)
		for j := range n {
			if i == j {
				continue
			}
			p, err := faultproxy.Start("127.0.0.1:0", ln.Addr().String(), 1, nil)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { p.Close() })
			c.links[i][j] = p
		}
	}
	return c
}

// passes reports whether a byte sent through link from->to comes back.
func passes(t *testing.T, c *Cluster, from, to int) bool {
	t.Helper()
	conn, err := net.DialTimeout("tcp", c.Link(from, to).Addr(), time.Second)
	if err != nil {
		return false
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(time.Second))
	if _, err := conn.Write([]byte{1}); err != nil {
		return false
	}
	var b [1]byte
	_, err = io.ReadFull(conn, b[:])
	return err == nil
}

// reachability returns, per directed link, whether it passes.
func reachability(t *testing.T, c *Cluster) map[[2]int]bool {
	m := map[[2]int]bool{}
	for i := range c.Size() {
		for j := range c.Size() {
			if i != j {
				m[[2]int{i, j}] = passes(t, c, i, j)
			}
		}
	}
	return m
}

func expect(t *testing.T, c *Cluster, what string, open func(from, to int) bool) {
	t.Helper()
	got := reachability(t, c)
	for l, ok := range got {
		if want := open(l[0], l[1]); ok != want {
			t.Errorf("%s: link n%d->n%d passes=%v, want %v", what, l[0]+1, l[1]+1, ok, want)
		}
	}
}

func TestNetworkFaultsCutTheRightLinks(t *testing.T) {
	c := proxiesOnly(t, 5)
	expect(t, c, "healthy", func(int, int) bool { return true })

	c.Partition([]int{0, 1}, []int{2, 3, 4})
	side := func(i int) bool { return i < 2 }
	expect(t, c, "partition {n1,n2}|{n3,n4,n5}", func(a, b int) bool { return side(a) == side(b) })
	c.Heal()
	expect(t, c, "healed", func(int, int) bool { return true })

	c.Isolate(2)
	expect(t, c, "isolate n3", func(a, b int) bool { return a != 2 && b != 2 })
	c.Heal()

	c.CutOneWay(0, 3)
	expect(t, c, "cut n1->n4", func(a, b int) bool { return !(a == 0 && b == 3) })
	c.Heal()

	// Bridge through n1 of five: n2,n3 on one side, n4,n5 on the other.
	c.Bridge(0)
	left := func(i int) bool { return i == 1 || i == 2 }
	right := func(i int) bool { return i == 3 || i == 4 }
	expect(t, c, "bridge n1", func(a, b int) bool {
		return !(left(a) && right(b) || right(a) && left(b))
	})
	c.Heal()

	// A stalled link holds bytes until the deadline: check a few links
	// only, each costs the whole deadline.
	c.Stall(4)
	for _, l := range [][2]int{{4, 0}, {0, 4}, {3, 4}} {
		if passes(t, c, l[0], l[1]) {
			t.Errorf("stall n5: link n%d->n%d passes", l[0]+1, l[1]+1)
		}
	}
	if !passes(t, c, 0, 1) {
		t.Error("stall n5: link n1->n2 does not pass")
	}
	c.Heal()
	expect(t, c, "healed at the end", func(int, int) bool { return true })
}

func TestBridgeOfThree(t *testing.T) {
	c := proxiesOnly(t, 3)
	c.Bridge(1) // n1 and n3 cannot talk; n2 talks to both
	expect(t, c, "bridge n2", func(a, b int) bool { return !(a == 0 && b == 2 || a == 2 && b == 0) })
}
