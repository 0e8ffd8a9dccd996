package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/edgekv/edgekv/config"
	"github.com/edgekv/edgekv/consensus/raftmsg"
	"github.com/edgekv/edgekv/wire"
	"github.com/edgekv/edgekv/wire/handshake"
)

// Bootstrap discovery. Member ids are random (SPEC §1), so the members of
// a new cluster must learn each other's ids before they can form the same
// first configuration. A member learns a peer's id from the peer
// transport's handshake: it sends a Hello naming the peer it expects and
// receiver id 0 ("unknown"); the peer refuses it (receiver id mismatch)
// with a reply Hello that carries the peer's own id and name, and closes
// the connection. The reply is trusted only if its cluster id is ours and
// its name is the one --initial-cluster gives for that address. Once every
// member's id is known, the membership is written to the data dir before
// Raft starts, and never discovered again: a member whose data dir was
// wiped comes back with a new id, which its peers do not know and refuse.

// ErrDiscovery wraps a configuration error found while discovering peers
// (another cluster, another name at an address).
var ErrDiscovery = errors.New("node: bootstrap discovery")

const (
	probeTimeout = 2 * time.Second
	// Retries back off from probeBackoffMin to probeBackoffMax: members
	// started together find each other within a fraction of a second,
	// and a member waiting for a late peer does not flood its log (each
	// probe is a refused handshake there).
	probeBackoffMin = 100 * time.Millisecond
	probeBackoffMax = 2 * time.Second
	// probeVersion is the peer protocol version the probe speaks; the
	// probe is refused on the receiver id before anything else matters.
	probeVersion = 1
)

// discoverMembers learns the id of every --initial-cluster member,
// retrying each until it answers or ctx ends.
func discoverMembers(ctx context.Context, cfg config.Config, self raftmsg.NodeID, log *slog.Logger) ([]MemberRecord, error) {
	out := make([]MemberRecord, 0, len(cfg.InitialCluster))
	for _, m := range cfg.InitialCluster {
		if m.Name == cfg.Name {
			out = append(out, MemberRecord{Name: m.Name, ID: self, Peer: m.PeerAddr})
			continue
		}
		id, err := waitForMemberID(ctx, cfg, self, m, log)
		if err != nil {
			return nil, err
		}
		for _, o := range out {
			if o.ID == id {
				return nil, fmt.Errorf("%w: members %s and %s report the same id %016x", ErrDiscovery, o.Name, m.Name, uint64(id))
			}
		}
		log.Info("node: discovered member", "name", m.Name, "peer", m.PeerAddr, "id", fmt.Sprintf("%016x", uint64(id)))
		out = append(out, MemberRecord{Name: m.Name, ID: id, Peer: m.PeerAddr})
	}
	return out, nil
}

func waitForMemberID(ctx context.Context, cfg config.Config, self raftmsg.NodeID, m config.Member, log *slog.Logger) (raftmsg.NodeID, error) {
	logged := false
	backoff := probeBackoffMin
	timer := time.NewTimer(backoff)
	defer timer.Stop()
	for {
		id, err := probeMemberID(ctx, m.PeerAddr, cfg.ClusterID(), self, cfg.Name, m.Name)
		if err == nil {
			return id, nil
		}
		if errors.Is(err, ErrDiscovery) {
			return 0, err
		}
		if !logged {
			log.Info("node: waiting for member to start", "name", m.Name, "peer", m.PeerAddr, "err", err)
			logged = true
		}
		timer.Reset(backoff)
		backoff = min(2*backoff, probeBackoffMax)
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("waiting for member %s at %s: %w", m.Name, m.PeerAddr, ctx.Err())
		case <-timer.C:
		}
	}
}

// probeMemberID asks the peer transport at addr for its member id. An
// error wrapping ErrDiscovery is a configuration error (retrying cannot
// help); any other is a peer not reachable yet.
func probeMemberID(ctx context.Context, addr string, clusterID uint64, self raftmsg.NodeID, selfName, wantName string) (raftmsg.NodeID, error) {
	d := net.Dialer{Timeout: probeTimeout}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(probeTimeout))
	hello := handshake.Hello{
		MinVersion: probeVersion, MaxVersion: probeVersion, ClusterID: clusterID,
		Codecs: 1, SenderID: self, ReceiverID: raftmsg.None,
		MaxFrameBytes: wire.DefaultMaxFrameBytes, MaxRecordBytes: wire.DefaultMaxRecordBytes,
		SenderName: selfName, ReceiverName: wantName,
	}
	if err := handshake.Write(conn, &hello); err != nil {
		return 0, err
	}
	reply, err := handshake.Read(conn)
	if err != nil {
		return 0, err
	}
	switch {
	case reply.Status == handshake.StatusMismatch && reply.Field == handshake.FieldClusterID || reply.ClusterID != clusterID:
		return 0, fmt.Errorf("%w: the node at %s belongs to another cluster (check --initial-cluster-token)", ErrDiscovery, addr)
	case reply.Status == handshake.StatusMismatch && reply.Field == handshake.FieldVersion:
		return 0, fmt.Errorf("%w: the node at %s speaks no common protocol version", ErrDiscovery, addr)
	case reply.SenderName != wantName:
		return 0, fmt.Errorf("%w: the node at %s is named %q, --initial-cluster says %q", ErrDiscovery, addr, reply.SenderName, wantName)
	case reply.SenderID == raftmsg.None || reply.SenderID == self:
		return 0, fmt.Errorf("%w: the node at %s reports member id %016x", ErrDiscovery, addr, uint64(reply.SenderID))
	}
	return reply.SenderID, nil
}
