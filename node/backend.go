package node

import (
	"context"
	"errors"
	"time"
	"unsafe"

	"github.com/edgekv/edgekv/batch"
	"github.com/edgekv/edgekv/consensus/raftmsg"
	"github.com/edgekv/edgekv/httpapi"
	"github.com/edgekv/edgekv/kv"
)

// retryAfter is the Retry-After of 429 and 503 answers: queues drain and
// elections end within about a second (batch package doc).
const retryAfter = time.Second

// Backend returns the member's implementation of the HTTP layer's Backend.
func (n *Node) Backend() httpapi.Backend { return backend{n} }

type backend struct{ n *Node }

var _ httpapi.Backend = backend{}

func (b backend) Put(_ context.Context, req httpapi.PutRequest) (httpapi.WriteResult, error) {
	cmd := kv.NewPut(req.Key, req.Value, cond(req.IfMatch, req.IfAbsent), req.IfMatch)
	r, err := b.n.write(&cmd, req.Idempotency)
	return httpapi.WriteResult{Meta: b.n.writeMeta(r.Revision, err)}, err
}

func (b backend) Delete(_ context.Context, req httpapi.DeleteRequest) (httpapi.WriteResult, error) {
	cmd := kv.NewDelete(req.Key, cond(req.IfMatch, false), req.IfMatch)
	r, err := b.n.write(&cmd, req.Idempotency)
	return httpapi.WriteResult{Meta: b.n.writeMeta(r.Revision, err)}, err
}

func (b backend) DeletePrefix(_ context.Context, req httpapi.DeletePrefixRequest) (httpapi.DeletePrefixResult, error) {
	cmd := kv.NewDeletePrefix(req.Prefix)
	r, err := b.n.write(&cmd, req.Idempotency)
	return httpapi.DeletePrefixResult{Meta: b.n.writeMeta(r.Revision, err), Deleted: r.Deleted}, err
}

func (b backend) Batch(_ context.Context, req httpapi.BatchRequest) (httpapi.WriteResult, error) {
	ops := make([]kv.Op, len(req.Ops))
	for i, op := range req.Ops {
		kind := kv.KindPut
		if op.Kind == httpapi.OpDelete {
			kind = kv.KindDelete
		}
		ops[i] = kv.Op{Kind: kind, Cond: cond(op.IfMatch, op.IfAbsent), IfMatch: op.IfMatch, Key: op.Key, Value: op.Value}
	}
	cmd := kv.NewBatch(ops)
	r, err := b.n.write(&cmd, req.Idempotency)
	return httpapi.WriteResult{Meta: b.n.writeMeta(r.Revision, err)}, err
}

func (b backend) Get(_ context.Context, req httpapi.GetRequest) (httpapi.GetResult, error) {
	v, err := b.n.readView(req.Consistency)
	if err != nil {
		return httpapi.GetResult{Meta: b.n.meta(0)}, err
	}
	value, rev, found := v.GetBytes(req.Key)
	m := b.n.meta(v.Revision())
	if !found {
		return httpapi.GetResult{Meta: m}, httpapi.Errorf(httpapi.KindNotFound, "key not found")
	}
	return httpapi.GetResult{Meta: m, Value: value, KeyRevision: rev}, nil
}

func (b backend) List(_ context.Context, req httpapi.ListRequest) (httpapi.ListResult, error) {
	v, err := b.n.readView(req.Consistency)
	if err != nil {
		return httpapi.ListResult{Meta: b.n.meta(0)}, err
	}
	items, more := v.Range(string(req.Prefix), string(req.After), req.Limit, nil)
	out := httpapi.ListResult{Meta: b.n.meta(v.Revision()), More: more, Items: make([]httpapi.ListItem, 0, len(items))}
	sumBytes := 0
	for i, it := range items {
		if i > 0 && req.MaxBytes > 0 && sumBytes >= req.MaxBytes {
			out.More = true
			break
		}
		sumBytes += len(it.Key) + len(it.Value)
		// The HTTP layer never modifies result bytes, and view keys are
		// immutable strings: no copy needed.
		key := unsafe.Slice(unsafe.StringData(it.Key), len(it.Key))
		out.Items = append(out.Items, httpapi.ListItem{Key: key, Value: it.Value, Revision: it.Revision})
	}
	return out, nil
}

func (b backend) Ready(context.Context) error {
	n := b.n
	if n.Leader() == raftmsg.None {
		return &httpapi.Error{Kind: httpapi.KindUnavailable, Message: "no leader known", RetryAfter: retryAfter}
	}
	if !n.waitApplied(n.commit.Load(), time.Now().Add(n.cfg.RequestTimeout)) {
		return &httpapi.Error{Kind: httpapi.KindUnavailable, Message: "not caught up with the commit index", RetryAfter: retryAfter}
	}
	return nil
}

func (b backend) Meta() httpapi.Meta { return b.n.meta(0) }

// meta describes this member for a response reflecting revision (zero:
// the current view's).
// writeMeta is the meta of a write's answer. A write that was applied
// reports the store revision it was applied at, verbatim: 0 for one that
// changed nothing in an empty store (a later revision would claim an
// order the write did not have; found by the chaos suite). A write refused
// before it was applied reports the current view's revision.
func (n *Node) writeMeta(revision uint64, err error) httpapi.Meta {
	if err != nil {
		return n.meta(revision)
	}
	m := n.meta(0)
	m.Revision = revision
	return m
}

func (n *Node) meta(revision uint64) httpapi.Meta {
	if revision == 0 {
		revision = n.machine.View().Revision()
	}
	m := httpapi.Meta{Revision: revision, Follower: !n.isLeader.Load()}
	if m.Follower {
		m.Leader = n.memberName(n.Leader())
	}
	return m
}

func cond(ifMatch uint64, ifAbsent bool) kv.Cond {
	switch {
	case ifMatch != 0:
		return kv.CondIfMatch
	case ifAbsent:
		return kv.CondIfAbsent
	}
	return kv.CondNone
}

// write proposes cmd and waits for its applied result. The command is
// encoded into a buffer of its own, never reused: the Raft log keeps it.
func (n *Node) write(cmd *kv.Command, idem httpapi.Idempotency) (kv.Result, error) {
	if len(idem.Key) > 0 {
		cmd.IdempotencyKey = idem.Key
		cmd.Fingerprint = kv.Fingerprint(idem.Fingerprint)
	}
	data, err := kv.AppendCommand(nil, cmd, n.machine.Config().Limits)
	if err != nil {
		if errors.Is(err, kv.ErrTooLarge) {
			return kv.Result{}, httpapi.Errorf(httpapi.KindTooLarge, "%v", err)
		}
		return kv.Result{}, httpapi.Errorf(httpapi.KindBadRequest, "%v", err)
	}
	if n.stopping.Load() {
		return kv.Result{}, unavailable("shutting down")
	}
	if errp := n.diskErr.Load(); errp != nil {
		// Refused before it reached any log; deletes too, since they need
		// the log as much as puts do.
		return kv.Result{}, httpapi.Errorf(httpapi.KindQuotaExceeded, "the log cannot be written: %v", *errp)
	}
	w, reason := n.reg.Acquire()
	if reason != batch.ReasonNone {
		return kv.Result{}, refused(reason)
	}
	if reason := n.batcher.Submit(batch.Proposal{RequestID: w.ID(), Data: data}); reason != batch.ReasonNone {
		w.Cancel()
		return kv.Result{}, refused(reason)
	}
	start := time.Now()
	out, ok := w.Wait(n.cfg.RequestTimeout)
	if m := n.metrics; m != nil {
		m.AddProposals(1)
		if !ok || out.reject != raftmsg.RejectNone || out.closed {
			m.AddProposalsFailed(1)
		} else {
			m.ObserveCommit(int64(time.Since(start)))
		}
	}
	if !ok {
		return kv.Result{}, httpapi.Errorf(httpapi.KindTimeout, "the write was not applied within %v; it may still be", n.cfg.RequestTimeout)
	}
	return resultOf(out)
}

func unavailable(msg string) error {
	return &httpapi.Error{Kind: httpapi.KindUnavailable, Message: msg, RetryAfter: retryAfter}
}

// refused maps a batcher or registry refusal (nothing was proposed).
func refused(r batch.Reason) error {
	switch r {
	case batch.ReasonFullCount, batch.ReasonFullBytes:
		return &httpapi.Error{Kind: httpapi.KindOverloaded, Message: "too many writes pending: " + r.String(), RetryAfter: retryAfter}
	case batch.ReasonTooLarge:
		return httpapi.Errorf(httpapi.KindTooLarge, "write larger than the pending-bytes bound")
	}
	return unavailable("not accepting writes: " + r.String())
}

// resultOf maps an outcome to the client's answer.
func resultOf(o outcome) (kv.Result, error) {
	if o.closed {
		return kv.Result{}, unavailable("shutting down; the write was not proposed")
	}
	switch o.reject {
	case raftmsg.RejectNone:
	case raftmsg.RejectOverloaded:
		return kv.Result{}, &httpapi.Error{Kind: httpapi.KindOverloaded, Message: "the leader is overloaded", RetryAfter: retryAfter}
	default:
		return kv.Result{}, unavailable("write refused before it was appended: " + rejectText(o.reject))
	}
	r := o.res
	switch r.Status {
	case kv.StatusOK:
		return r, nil
	case kv.StatusPreconditionFailed:
		e := httpapi.Errorf(httpapi.KindPreconditionFailed, "precondition failed")
		for _, i := range r.Failed {
			e.Failed = append(e.Failed, int(i))
		}
		return r, e
	case kv.StatusNotFound:
		return r, httpapi.Errorf(httpapi.KindNotFound, "key not found")
	case kv.StatusQuotaExceeded:
		return r, httpapi.Errorf(httpapi.KindQuotaExceeded, "the store is full (--quota-bytes)")
	case kv.StatusIdempotencyConflict:
		return r, httpapi.Errorf(httpapi.KindIdempotencyConflict, "Idempotency-Key reused with a different request")
	case kv.StatusInvalid:
		return r, httpapi.Errorf(httpapi.KindBadRequest, "command refused by the state machine: %v", r.Err)
	}
	return r, httpapi.Errorf(httpapi.KindInternal, "unexpected apply status %v", r.Status)
}

func rejectText(r raftmsg.RejectReason) string {
	switch r {
	case raftmsg.RejectNoLeader:
		return "no leader"
	case raftmsg.RejectNotQuorum:
		return "the leader cannot reach a quorum"
	case raftmsg.RejectTransferring:
		return "leadership transfer in progress"
	case raftmsg.RejectNotReady:
		return "the leader has not committed its first entry yet"
	case raftmsg.RejectOverloaded:
		return "too many reads pending"
	}
	return "refused"
}

// readView returns a view that reflects every write acknowledged before
// the call (linearizable, lease) or the latest local one (stale). A lease
// read on a leader whose lease holds skips the heartbeat round (lease.go);
// everywhere else it is a linearizable read.
func (n *Node) readView(c httpapi.Consistency) (*kv.View, error) {
	if c == httpapi.Stale {
		return n.machine.View(), nil
	}
	deadline := time.Now().Add(n.cfg.RequestTimeout)
	for {
		ch := *n.applyWait.Load()
		a, err := n.readIndex(deadline, c == httpapi.Lease)
		if err != nil {
			return nil, err
		}
		switch a.reject {
		case raftmsg.RejectNone:
			if !n.waitApplied(a.index, deadline) {
				return nil, unavailable("read not served in time: the applied index lags the read index")
			}
			return n.machine.View(), nil
		case raftmsg.RejectNotReady:
			// A new leader commits its no-op within a round trip: wait for
			// the next apply and ask again.
			timer := time.NewTimer(time.Until(deadline))
			select {
			case <-ch:
				timer.Stop()
				continue
			case <-timer.C:
			case <-n.stop:
				timer.Stop()
			}
		}
		return nil, unavailable("read refused: " + rejectText(a.reject))
	}
}

// readIndex asks the raft loop for a read index (thesis §6.4).
func (n *Node) readIndex(deadline time.Time, lease bool) (readAnswer, error) {
	if n.stopping.Load() {
		return readAnswer{}, unavailable("shutting down")
	}
	r := readRequest{
		id:         n.readSeq.Add(1),
		answer:     make(chan readAnswer, 1),
		expiresAtN: n.clock.Now() + int64(time.Until(deadline)),
		lease:      lease,
	}
	select {
	case n.readReqs <- r:
	default:
		return readAnswer{}, unavailable("too many reads pending")
	}
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	select {
	case a := <-r.answer:
		return a, nil
	case <-timer.C:
		return readAnswer{}, unavailable("read not served in time")
	case <-n.stop:
		return readAnswer{}, unavailable("shutting down")
	}
}
