package ops

import (
	"bytes"
	"fmt"
	"sync"
	"testing"
)

// TestConcurrentRecordingAndScraping records from several goroutines while
// others scrape and peers come and go; at the end every count is exact.
// Under -race it also checks the recording paths share no unguarded state.
func TestConcurrentRecordingAndScraping(t *testing.T) {
	m := NewMetrics()
	const writers, perWriter = 4, 2000
	var recorders, background sync.WaitGroup
	stop := make(chan struct{})
	background.Go(func() { // scraper
		var b bytes.Buffer
		for {
			select {
			case <-stop:
				return
			default:
			}
			b.Reset()
			m.WritePrometheus(&b)
			if _, err := parseExposition(b.String()); err != nil {
				t.Error(err)
				return
			}
		}
	})
	background.Go(func() { // membership churn
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			name := fmt.Sprintf("n%d", i%5)
			m.AddPeer(name).SetLag(uint64(i))
			if i%3 == 0 {
				m.RemovePeer(name)
			}
		}
	})
	for w := range writers {
		recorders.Go(func() {
			p := m.AddPeer(fmt.Sprintf("writer%d", w))
			for i := range perWriter {
				m.ObserveRequest(EndpointKVPut, 200, int64(i))
				m.AddProposals(1)
				m.ObserveFsync(int64(i))
				p.SetInflightBytes(uint64(i + 1))
			}
		})
	}
	recorders.Wait()
	close(stop)
	background.Wait()

	fams, _ := scrape(t, m)
	total := float64(writers * perWriter)
	if v, _ := fams[famRequests].value(famRequests, "endpoint", "kv_put", "code", "200"); v != total {
		t.Errorf("requests %v, want %v", v, total)
	}
	if v, _ := fams[famRequestSeconds].value(famRequestSeconds+"_count", "endpoint", "kv_put", "class", "2xx"); v != total {
		t.Errorf("request latency count %v, want %v", v, total)
	}
	if v, _ := fams[famProposals].value(famProposals); v != total {
		t.Errorf("proposals %v, want %v", v, total)
	}
	if v, _ := fams[famFsyncSeconds].value(famFsyncSeconds + "_count"); v != total {
		t.Errorf("fsync count %v, want %v", v, total)
	}
	for w := range writers {
		if v, _ := fams[famPeerInflight].value(famPeerInflight, "peer", fmt.Sprintf("writer%d", w)); v != perWriter {
			t.Errorf("writer%d in flight %v, want %v", w, v, perWriter)
		}
	}
}
