package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"time"
)

// admin sends a membership request (SPEC §2 /v1/cluster/...) to member
// via and returns the status and body; an error means no answer.
func (c *Cluster) admin(ctx context.Context, via int, method, path string, body any) (int, string, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, "", err
		}
		rd = bytes.NewReader(b)
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, "http://"+c.nodes[via].Client+path, rd)
	if err != nil {
		return 0, "", err
	}
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", fmt.Errorf("cluster: %s %s via %s: %w", method, path, c.nodes[via].Name, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return resp.StatusCode, string(bytes.TrimSpace(b)), nil
}

// TransferLeader asks member via to move leadership to member to
// (POST /v1/cluster/transfer-leader).
func (c *Cluster) TransferLeader(ctx context.Context, via, to int) (int, string, error) {
	return c.admin(ctx, via, "POST", "/v1/cluster/transfer-leader", map[string]string{"to": c.nodes[to].Name})
}

// RemoveMember asks member via to remove member i from the cluster
// (DELETE /v1/cluster/members/<name>).
func (c *Cluster) RemoveMember(ctx context.Context, via, i int) (int, string, error) {
	return c.admin(ctx, via, "DELETE", "/v1/cluster/members/"+url.PathEscape(c.nodes[i].Name), nil)
}

// ExpectExit marks (or unmarks) the member's current process as one that
// may exit on its own (it is being removed from the cluster), so that its
// exit is not reported as a crash.
func (n *Node) ExpectExit(expected bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.proc != nil {
		n.proc.exitExpected = expected
	}
}

// AwaitExit waits up to d for the member's process to exit, then kills it;
// it reports whether the process exited by itself.
func (n *Node) AwaitExit(d time.Duration) bool {
	n.mu.Lock()
	p := n.proc
	n.mu.Unlock()
	if p == nil {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-p.exited:
		return true
	case <-t.C:
		n.Kill()
		return false
	}
}

// Rejoin wipes member i's data dir (the member must have been removed and
// stopped) and starts it as a new member that joins through member via
// (--join), under the same name and addresses; the leader adds it as a
// learner and promotes it once it has caught up. Later restarts keep
// --join, which a node ignores once its data dir holds a member.
func (c *Cluster) Rejoin(ctx context.Context, i, via int) error {
	n := c.nodes[i]
	if n.Running() {
		return fmt.Errorf("cluster: rejoin %s: still running", n.Name)
	}
	if err := os.RemoveAll(n.DataDir); err != nil {
		return fmt.Errorf("cluster: rejoin %s: %w", n.Name, err)
	}
	args := slices.Clone(n.args)
	for k := 0; k+1 < len(args); k++ {
		if args[k] == "--initial-cluster" {
			args[k], args[k+1] = "--join", c.nodes[via].Client
		}
	}
	n.mu.Lock()
	n.args = args
	n.mu.Unlock()
	if err := n.spawn(c.cfg.Binary); err != nil {
		return err
	}
	return n.awaitServing(ctx)
}

// Membership is what the running, unpaused members other than member i
// say about it: listed, when one of them still lists i in its applied
// member table; removed, when one of them no longer does (a removal is
// applied on the leader before it answers, and on followers soon after);
// answered, when any of them answered at all.
func (c *Cluster) Membership(ctx context.Context, i int) (listed, removed, answered bool) {
	for j, n := range c.nodes {
		if j == i || !n.Running() || n.Paused() {
			continue
		}
		st, err := c.Status(ctx, j)
		if err != nil {
			continue
		}
		answered = true
		if st.Lists(c.nodes[i].Name) {
			listed = true
		} else {
			removed = true
		}
	}
	return listed, removed, answered
}
