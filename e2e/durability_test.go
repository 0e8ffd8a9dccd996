package e2e

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestAllMembersKilledKeepAcknowledgedWrites runs a 3-member cluster of
// the crashtest build (storage keeps every unsynced write in process
// memory, so kill -9 loses exactly what a power cut would), writes from
// several clients, kills every member at once mid-load, restarts them and
// checks that every acknowledged write is there.
func TestAllMembersKilledKeepAcknowledgedWrites(t *testing.T) {
	if testing.Short() {
		t.Skip("starts six processes")
	}
	c := startClusterWith(t, binaryWithTags(t, "crashtest"), 3)
	c.leader()
	var addrs []string
	for _, p := range c.procs {
		addrs = append(addrs, p.client)
	}
	type ack struct {
		key string
		rev string
	}
	const killAfterAcks = 300
	procs := make([]*proc, 0, len(c.procs))
	for _, p := range c.procs {
		procs = append(procs, p)
	}
	killed := make(chan struct{})
	var mu sync.Mutex
	var acked []ack
	stop := make(chan struct{})
	var wg sync.WaitGroup
	client := &http.Client{Timeout: 5 * time.Second}
	for w := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				key := fmt.Sprintf("w%d-%d", w, i)
				req, _ := http.NewRequest("PUT", "http://"+addrs[(w+i)%len(addrs)]+"/v1/kv/"+key, strings.NewReader(key))
				resp, err := client.Do(req)
				if err != nil {
					continue // unknown outcome: not counted
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == 200 {
					mu.Lock()
					acked = append(acked, ack{key, resp.Header.Get("ETag")})
					if len(acked) == killAfterAcks {
						// Kill every member the instant this write is
						// acknowledged: what was acknowledged without being
						// durable on a quorum has no time to become so.
						for _, p := range procs {
							p.cmd.Process.Kill()
						}
						close(killed)
					}
					mu.Unlock()
				}
			}
		}()
	}
	// The load runs until a writer kills every member (above).
	select {
	case <-killed:
	case <-time.After(30 * time.Second):
		mu.Lock()
		n := len(acked)
		mu.Unlock()
		t.Fatalf("only %d writes acknowledged in 30s", n)
	}
	for name, p := range c.procs {
		<-p.exited
		delete(c.procs, name)
	}
	close(stop)
	wg.Wait()

	for _, name := range c.names {
		c.procs[name] = startBinary(t, c.bin, c.flags[name]...)
	}
	for _, p := range c.procs {
		p.awaitServing()
	}
	for _, p := range c.procs {
		p.waitReady()
	}
	mu.Lock()
	defer mu.Unlock()
	t.Logf("%d writes acknowledged before the crash", len(acked))
	for name, p := range c.procs {
		missing := 0
		for _, a := range acked {
			g := p.do("GET", "/v1/kv/"+a.key, "")
			if g.status != 200 || g.body != a.key || g.header.Get("ETag") != a.rev {
				if missing < 5 {
					t.Errorf("%s: acknowledged %s (ETag %s) reads %d %q ETag %s", name, a.key, a.rev, g.status, g.body, g.header.Get("ETag"))
				}
				missing++
			}
		}
		if missing > 0 {
			t.Fatalf("%s: %d of %d acknowledged writes lost", name, missing, len(acked))
		}
	}
}
