package node

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/edgekv/edgekv/consensus/raftmsg"
	"github.com/edgekv/edgekv/wire"
)

type nopHandler struct{}

func (nopHandler) HandleBatch(b *wire.Batch)                       { b.Release() }
func (nopHandler) HandleSnapshot(raftmsg.Message, io.Reader) error { return errors.New("no") }
func (nopHandler) PeerUnreachable(raftmsg.NodeID)                  {}
func (nopHandler) SnapshotDone(raftmsg.NodeID, uint64, error)      {}

// TestProbeLearnsIDFromRealTransport pins the behaviour discovery relies
// on: the peer transport's refusal of a Hello with receiver id 0 carries
// its own id, name and cluster id.
func TestProbeLearnsIDFromRealTransport(t *testing.T) {
	const cluster = 0xc1
	tr, err := wire.NewTransport(wire.Config{
		LocalID: 0xabcdef, LocalName: "peer", ClusterID: cluster, ListenAddr: "127.0.0.1:0",
		Handler: nopHandler{}, Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	addr := tr.Addr().String()
	id, err := probeMemberID(ctx, addr, cluster, 7, "me", "peer")
	if err != nil || id != 0xabcdef {
		t.Fatalf("probe = %x, %v; want abcdef", uint64(id), err)
	}
	if _, err := probeMemberID(ctx, addr, cluster+1, 7, "me", "peer"); !errors.Is(err, ErrDiscovery) {
		t.Fatalf("probe of another cluster: %v, want ErrDiscovery", err)
	}
	if _, err := probeMemberID(ctx, addr, cluster, 7, "me", "someone-else"); !errors.Is(err, ErrDiscovery) {
		t.Fatalf("probe of a misnamed member: %v, want ErrDiscovery", err)
	}
	// Nobody listening: a plain error, to be retried.
	tr.Close()
	if _, err := probeMemberID(ctx, addr, cluster, 7, "me", "peer"); err == nil || errors.Is(err, ErrDiscovery) {
		t.Fatalf("probe of a closed port: %v, want a retryable error", err)
	}
}
