package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// fakeEnv makes the test binary act as a fake edgekv node, so that the
// edgekv side of the tool (process handling, SPEC §1 flags, loadgen, the
// peer proxies) is tested before the real binary exists. The fake accepts
// exactly the flags the tool passes, serves the few HTTP endpoints the
// tool and loadgen use from memory, and measures the round trip to every
// peer over the address --initial-cluster gives, so that a test sees
// what the proxies did to the peer links.
const fakeEnv = "COMPARE_FAKE_EDGEKV"

func TestMain(m *testing.M) {
	if os.Getenv(fakeEnv) == "1" {
		os.Exit(fakeNodeMain(os.Args[1:]))
	}
	os.Exit(m.Run())
}

type fakeNode struct {
	name  string
	peers map[string]string // name -> address from --initial-cluster

	mu       sync.Mutex
	kv       map[string][]byte
	revision uint64
	minRTT   map[string]time.Duration // peers answered at least once
}

func fakeNodeMain(args []string) int {
	fs := flag.NewFlagSet("fake-edgekv", flag.ContinueOnError)
	name := fs.String("name", "node1", "")
	dataDir := fs.String("data-dir", "./edgekv-data", "")
	listenClient := fs.String("listen-client", "127.0.0.1:7379", "")
	listenPeer := fs.String("listen-peer", "127.0.0.1:7380", "")
	advertisePeer := fs.String("advertise-peer", "", "")
	initial := fs.String("initial-cluster", "", "")
	fs.String("initial-cluster-token", "edgekv", "")
	fs.String("log-level", "info", "")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if err := os.MkdirAll(*dataDir, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, "fake edgekv:", err)
		return 1
	}
	n := &fakeNode{name: *name, peers: map[string]string{}, kv: map[string][]byte{}, minRTT: map[string]time.Duration{}}
	for _, m := range strings.Split(*initial, ",") {
		pn, addr, ok := strings.Cut(m, "=")
		if !ok {
			fmt.Fprintf(os.Stderr, "fake edgekv: bad --initial-cluster member %q\n", m)
			return 2
		}
		if pn != *name {
			n.peers[pn] = addr
		} else if *advertisePeer != "" && addr != *advertisePeer {
			fmt.Fprintf(os.Stderr, "fake edgekv: --initial-cluster names %s for me, --advertise-peer says %s\n", addr, *advertisePeer)
			return 2
		}
	}
	peerLn, err := net.Listen("tcp", *listenPeer)
	if err != nil {
		fmt.Fprintln(os.Stderr, "fake edgekv:", err)
		return 1
	}
	go fakeEcho(peerLn)
	go exitWithParent(os.Getppid())
	for pn, addr := range n.peers {
		go n.ping(pn, addr)
	}
	clientLn, err := net.Listen("tcp", *listenClient)
	if err != nil {
		fmt.Fprintln(os.Stderr, "fake edgekv:", err)
		return 1
	}
	srv := &http.Server{Handler: n}
	go srv.Serve(clientLn)
	fmt.Println("fake edgekv", *name, "listening on", *listenClient)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, os.Interrupt)
	<-sig
	srv.Close()
	return 0
}

// exitWithParent ends the fake when the test binary that started it is
// gone (killed by a timeout, say), so that no fake outlives its test.
func exitWithParent(parent int) {
	for os.Getppid() == parent {
		time.Sleep(200 * time.Millisecond) // polling the parent: there is no event for it
	}
	os.Exit(3)
}

// fakeEcho answers every byte a peer sends with the same byte.
func fakeEcho(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			_, _ = io.Copy(c, c)
		}()
	}
}

// ping measures the round trip to a peer, one byte at a time, forever.
func (n *fakeNode) ping(peer, addr string) {
	var c net.Conn
	buf := make([]byte, 1)
	for {
		if c == nil {
			var err error
			if c, err = net.DialTimeout("tcp", addr, time.Second); err != nil {
				c = nil
				time.Sleep(20 * time.Millisecond) // retry pacing in the fake, not a test wait
				continue
			}
		}
		t0 := time.Now()
		if _, err := c.Write(buf); err != nil {
			c.Close()
			c = nil
			continue
		}
		if _, err := io.ReadFull(c, buf); err != nil {
			c.Close()
			c = nil
			continue
		}
		rtt := time.Since(t0)
		n.mu.Lock()
		if old, ok := n.minRTT[peer]; !ok || rtt < old {
			n.minRTT[peer] = rtt
		}
		n.mu.Unlock()
		time.Sleep(10 * time.Millisecond) // ping pacing
	}
}

func (n *fakeNode) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.URL.Path == "/readyz":
		n.mu.Lock()
		ready := len(n.minRTT) == len(n.peers)
		n.mu.Unlock()
		if !ready {
			http.Error(w, `{"error":"peers not reached yet","code":"unavailable"}`, http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ok")
	case r.URL.Path == "/v1/cluster":
		json.NewEncoder(w).Encode(map[string]any{"name": n.name, "leader": "n1"})
	case r.URL.Path == "/fake/peer-rtt":
		n.mu.Lock()
		out := map[string]float64{}
		for p, d := range n.minRTT {
			out[p] = d.Seconds() * 1e3
		}
		n.mu.Unlock()
		json.NewEncoder(w).Encode(out)
	case r.URL.Path == "/v1/batch" && r.Method == http.MethodPost:
		var body struct {
			Ops []struct {
				Key   string `json:"key"`
				Value []byte `json:"value"`
			} `json:"ops"`
		}
		if err := json.NewDecoder(io.LimitReader(r.Body, 64<<20)).Decode(&body); err != nil || len(body.Ops) == 0 {
			http.Error(w, `{"error":"bad batch","code":"bad_request"}`, http.StatusBadRequest)
			return
		}
		n.mu.Lock()
		n.revision++
		for _, op := range body.Ops {
			n.kv[op.Key] = op.Value
		}
		rev := n.revision
		n.mu.Unlock()
		fmt.Fprintf(w, `{"revision":%d}`, rev)
	case strings.HasPrefix(r.URL.Path, "/v1/kv/"):
		key := strings.TrimPrefix(r.URL.Path, "/v1/kv/")
		switch r.Method {
		case http.MethodPut:
			v, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
			if err != nil {
				http.Error(w, `{"error":"body","code":"bad_request"}`, http.StatusBadRequest)
				return
			}
			n.mu.Lock()
			n.revision++
			n.kv[key] = v
			rev := n.revision
			n.mu.Unlock()
			fmt.Fprintf(w, `{"revision":%d}`, rev)
		case http.MethodGet:
			if r.URL.Query().Get("consistency") != "linearizable" {
				http.Error(w, `{"error":"want linearizable","code":"bad_request"}`, http.StatusBadRequest)
				return
			}
			n.mu.Lock()
			v, ok := n.kv[key]
			n.mu.Unlock()
			if !ok {
				http.Error(w, `{"error":"no key","code":"not_found"}`, http.StatusNotFound)
				return
			}
			w.Write(v)
		default:
			http.Error(w, `{"error":"method","code":"bad_request"}`, http.StatusMethodNotAllowed)
		}
	default:
		http.NotFound(w, r)
	}
}

// useFakeEdgekv returns the path of the fake edgekv binary (this test
// binary) and makes the children it starts act as fake nodes.
func useFakeEdgekv(t *testing.T) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv(fakeEnv, "1")
	return exe
}

// fakePeerRTT reads what a fake node measured to its peers, in ms.
func fakePeerRTT(t *testing.T, clientAddr string) map[string]float64 {
	t.Helper()
	resp, err := http.Get("http://" + clientAddr + "/fake/peer-rtt")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	return out
}

// pidGone reports whether pid no longer exists (the tool reaps its
// children, so a stopped node's pid is gone).
func pidGone(pid int) bool {
	_, err := os.Stat(filepath.Join("/proc", strconv.Itoa(pid)))
	return os.IsNotExist(err)
}
