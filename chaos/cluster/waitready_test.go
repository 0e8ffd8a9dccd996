package cluster

import (
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestWaitReadyNamesTheNodeThatIsNotReady: n1 is ready throughout, n2
// never is (a removed member left running). When the deadline falls while
// n1's probe is in flight, the error must still name n2 and not n1: the
// chaos run of seed 658168 reported "n1 not ready" while n1 was following
// its leader and the member that could never be ready was n2.
func TestWaitReadyNamesTheNodeThatIsNotReady(t *testing.T) {
	var n2Probes atomic.Int32
	n1 := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n2Probes.Load() >= 2 {
			// From the third pass on, n1's probe is still in flight when
			// WaitReady's deadline passes.
			<-r.Context().Done()
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	defer n1.Close()
	n2 := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n2Probes.Add(1)
		http.Error(w, "no leader known", http.StatusServiceUnavailable)
	}))
	defer n2.Close()
	dir := t.TempDir()
	c := &Cluster{probe: &http.Client{Timeout: 10 * time.Second}}
	for i, srv := range []*httptest.Server{n1, n2} {
		name := []string{"n1", "n2"}[i]
		c.nodes = append(c.nodes, &Node{Name: name, Index: i, Client: strings.TrimPrefix(srv.URL, "http://"),
			LogPath: filepath.Join(dir, name+".log"), proc: &process{}})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err := c.WaitReady(ctx)
	if err == nil {
		t.Fatal("WaitReady returned nil with n2 never ready")
	}
	if msg := err.Error(); !strings.HasPrefix(msg, "cluster: n2 not ready: ") {
		t.Fatalf("WaitReady blames the wrong node, want n2 alone: %v", err)
	}
	if n2Probes.Load() < 2 {
		t.Fatalf("n2 probed %d times, want at least 2", n2Probes.Load())
	}
}
