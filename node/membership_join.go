package node

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/edgekv/edgekv/config"
	"github.com/edgekv/edgekv/consensus/raftmsg"
	"github.com/edgekv/edgekv/ops"
)

// --join: a node with a new data dir asks a running member (any member:
// a follower forwards to the leader) to add it as a learner that the
// leader promotes once caught up, with POST /v1/cluster/members carrying
// its random member id and cluster id. The answer is the member table
// after the change; the node records it in its state file before Raft
// starts, then starts as a learner: it knows every member's id and peer
// address, and the leader already sends it the log.
//
// A retried request (after a timeout, or a crash before the state file
// was written) finds the member added with the same id and gets the same
// answer. A node whose data dir was wiped has a new id: the cluster
// refuses it while its old identity is a member (409, remove it first).

// ErrJoin wraps a refusal from the cluster (retrying cannot help).
var ErrJoin = errors.New("node: join refused")

const (
	joinAttemptTimeout = 30 * time.Second
	joinBackoffMin     = 200 * time.Millisecond
	joinBackoffMax     = 3 * time.Second
	maxJoinAnswerBytes = 1 << 20
)

// joinCluster adds this node to the cluster of the member at cfg.Join
// and returns the member table, retrying while the cluster is
// unavailable until ctx ends.
func joinCluster(ctx context.Context, cfg config.Config, self raftmsg.NodeID, log *slog.Logger) ([]MemberRecord, error) {
	body, err := json.Marshal(ops.AddMemberRequest{
		Name: cfg.Name, Peer: cfg.AdvertisePeer, Client: cfg.AdvertiseClient,
		ID: fmt.Sprintf("%016x", uint64(self)), ClusterID: fmt.Sprintf("%016x", cfg.ClusterID()), AutoPromote: true,
	})
	if err != nil {
		return nil, err
	}
	client := &http.Client{Timeout: joinAttemptTimeout}
	url := "http://" + cfg.Join + ops.MembersPath
	backoff := joinBackoffMin
	for attempt := 1; ; attempt++ {
		members, retry, err := joinOnce(ctx, client, url, body, self, cfg.Name)
		if err == nil {
			log.Info("node: joined the cluster as a learner", "via", cfg.Join, "members", len(members))
			return members, nil
		}
		if !retry {
			return nil, err
		}
		log.Info("node: join not done yet; retrying", "via", cfg.Join, "attempt", attempt, "err", err)
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("joining via %s: %w (last: %v)", cfg.Join, ctx.Err(), err)
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, joinBackoffMax)
	}
}

// joinOnce makes one attempt; retry says whether another may succeed.
func joinOnce(ctx context.Context, client *http.Client, url string, body []byte, self raftmsg.NodeID, name string) (_ []MemberRecord, retry bool, _ error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, false, fmt.Errorf("--join: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return nil, true, err
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, maxJoinAnswerBytes+1))
	if err != nil {
		return nil, true, err
	}
	if len(answer) > maxJoinAnswerBytes {
		return nil, false, fmt.Errorf("%w: answer over %d bytes", ErrJoin, maxJoinAnswerBytes)
	}
	switch {
	case resp.StatusCode == http.StatusOK:
	case resp.StatusCode == http.StatusServiceUnavailable || resp.StatusCode == http.StatusGatewayTimeout || resp.StatusCode == http.StatusTooManyRequests:
		return nil, true, fmt.Errorf("%s: %s", resp.Status, bytes.TrimSpace(answer))
	default:
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(answer, &e) != nil || e.Error == "" {
			e.Error = strconv.Quote(string(answer))
		}
		return nil, false, fmt.Errorf("%w by %s: %s: %s", ErrJoin, url, resp.Status, e.Error)
	}
	members, err := joinedMembers(answer, self, name)
	return members, false, err
}

// joinedMembers reads the member table from a join answer and checks it
// lists this node as a learner.
func joinedMembers(answer []byte, self raftmsg.NodeID, name string) ([]MemberRecord, error) {
	var res ops.MembershipResult
	if err := json.Unmarshal(answer, &res); err != nil {
		return nil, fmt.Errorf("%w: unreadable answer: %v", ErrJoin, err)
	}
	out := make([]MemberRecord, 0, len(res.Members))
	for _, m := range res.Members {
		id, err := strconv.ParseUint(m.ID, 16, 64)
		if err != nil {
			return nil, fmt.Errorf("%w: member %q has id %q: %v", ErrJoin, m.Name, m.ID, err)
		}
		r := MemberRecord{Name: m.Name, ID: raftmsg.NodeID(id), Peer: m.Peer, Client: m.Client, Learner: !m.Voter}
		if r.ID == self {
			r.AutoPromote = r.Learner
		}
		out = append(out, r)
	}
	tab := newMemberTable(out, 0)
	if err := tab.check(); err != nil {
		return nil, fmt.Errorf("%w: member table: %v", ErrJoin, err)
	}
	if me, ok := tab.byID(self); !ok || me.Name != name {
		return nil, fmt.Errorf("%w: the answer does not list this node (%s, id %016x)", ErrJoin, name, uint64(self))
	}
	return tab.members, nil
}
