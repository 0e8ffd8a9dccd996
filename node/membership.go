package node

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edgekv/edgekv/consensus"
	"github.com/edgekv/edgekv/consensus/raftmsg"
	"github.com/edgekv/edgekv/ops"
	"github.com/valyala/fasthttp"
)

// Membership runtime (thesis §4): the replicated member table (members.go)
// applied by the applier, the transport's peers following the
// configuration in force (Ready.ConfState), membership requests carried
// into the raft loop, automatic promotion of caught-up learners that
// joined with --join, announcements of a member's own client address,
// and the member's own removal.
//
// Transport peers follow the configuration in force, which changes when a
// conf-change entry is appended (append-time, consensus doc). Addresses
// come from the records in those entries' Context, noted as entries are
// appended. A peer dropped from the configuration is removed from the
// transport only after removeGraceTicks: the leader keeps sending a
// removed member the log until it learns that its removal committed
// (consensus doc), and an uncommitted removal may be undone.

const (
	// removeGraceTicks: a member out of the configuration keeps its
	// transport peer this many election timeouts.
	removeGraceTimeouts = 4
	// membershipCallsLen: membership requests waiting for the raft loop;
	// they are rare (operators, joins), and a full queue answers 503.
	membershipCallsLen = 16
	// promoteLagEntries: the leader promotes an auto-promote learner once
	// its log is at most this many entries behind (the core refuses above
	// consensus.Config.MaxLearnerLagEntries, DefaultMaxLearnerLagEntries).
	promoteLagEntries = consensus.DefaultMaxLearnerLagEntries / 2
	// transferWaitTimeouts: a leadership transfer that has not completed
	// within this many election timeouts is reported as failed (the core
	// aborts it after one).
	transferWaitTimeouts = 3
)

// peerSetter is the part of a transport that follows membership changes
// (wire.Transport has it; MemNetwork routes by id and needs nothing).
type peerSetter interface {
	AddPeer(id raftmsg.NodeID, name, addr string) error
	RemovePeer(id raftmsg.NodeID)
}

// membership is the Node's membership state.
type membership struct {
	table atomic.Pointer[memberTable]
	// calls run on the raft loop (the only goroutine touching the core).
	calls     chan func()
	removed   atomic.Bool
	removedCh chan struct{}
	// tableRestored: the applier replaced the table from a snapshot.
	tableRestored atomic.Bool
	removeOne     sync.Once

	mu      sync.Mutex
	waiters map[uint64]chan struct{} // conf-change request id → closed when applied
	// reqSeq numbers conf-change requests; the boot counter in its high
	// bits keeps an entry of an earlier boot, replayed from the log, from
	// completing a request of this one.
	reqSeq atomic.Uint64

	// appliedChanges: this member's conf-change requests applied in the
	// batch the applier is applying (applier only); they are answered
	// once the batch's applied index is published, so that a client that
	// asks for the next change at once does not find this one pending.
	appliedChanges []uint64

	// Raft loop only.
	addrs        map[raftmsg.NodeID]MemberRecord // every record seen in the log
	peers        map[raftmsg.NodeID]bool         // transport peers added
	removeAt     map[raftmsg.NodeID]uint64       // tick at which to drop a peer
	ticks        uint64
	lastAnnounce uint64
	lastProgress uint64
	metrics      *membershipMetrics // nil: no metrics
}

func (m *membership) init(table *memberTable, recovered []raftmsg.Entry) {
	m.table.Store(table)
	m.calls = make(chan func(), membershipCallsLen)
	m.removedCh = make(chan struct{})
	m.waiters = map[uint64]chan struct{}{}
	m.addrs = map[raftmsg.NodeID]MemberRecord{}
	m.peers = map[raftmsg.NodeID]bool{}
	m.removeAt = map[raftmsg.NodeID]uint64{}
	for _, r := range table.members {
		m.addrs[r.ID] = r
	}
	m.noteAppended(recovered)
}

// noteAppended records the addresses carried by conf-change entries (raft
// loop, or New before it starts).
func (m *membership) noteAppended(ents []raftmsg.Entry) {
	for i := range ents {
		e := &ents[i]
		if e.Type != raftmsg.EntryConfChange {
			continue
		}
		cc, err := raftmsg.DecodeConfChange(e.Data)
		if err != nil || cc.Type == raftmsg.ConfChangeRemove {
			continue
		}
		if r, err := decodeMemberRecord(cc.Context); err == nil {
			r.ID = cc.NodeID
			if old, ok := m.addrs[r.ID]; ok && r.Client == "" {
				r.Client = old.Client
			}
			m.addrs[r.ID] = r
		}
	}
}

// Members returns the member table (applied), sorted by id.
func (n *Node) Members() []MemberRecord { return slices.Clone(n.mem.table.Load().members) }

// Removed is closed once this member knows it was removed from the
// cluster; it then stops serving (the server shuts down).
func (n *Node) Removed() <-chan struct{} { return n.mem.removedCh }

func (n *Node) markRemoved(why string) {
	n.mem.removeOne.Do(func() {
		n.mem.removed.Store(true)
		n.log.Warn("node: this member was removed from the cluster; it stops serving", "why", why)
		if n.cfg.OnRemoved != nil {
			n.cfg.OnRemoved()
		}
		close(n.mem.removedCh)
	})
}

// memberName is the name of member id ("" when unknown).
func (n *Node) memberName(id raftmsg.NodeID) string {
	if r, ok := n.mem.table.Load().byID(id); ok {
		return r.Name
	}
	return ""
}

// ---- raft loop side

// syncPeers makes the transport's peers the members of conf (but this
// one); members that left are dropped after the grace period.
func (n *Node) syncPeers(conf raftmsg.ConfState) {
	m := &n.mem
	want := map[raftmsg.NodeID]bool{}
	for _, id := range slices.Concat(conf.Voters, conf.Learners) {
		if id != n.cfg.ID {
			want[id] = true
		}
	}
	ps, _ := n.tr.(peerSetter)
	for id := range want {
		delete(m.removeAt, id)
		r, ok := m.addrs[id]
		if !ok {
			// Until the table of a snapshot installed with this
			// configuration is applied (maybeResyncRestored).
			n.log.Warn("node: member in the configuration without a known address yet", "id", fmt.Sprintf("%016x", uint64(id)))
			continue
		}
		if ps != nil {
			if err := ps.AddPeer(id, r.Name, r.Peer); err != nil {
				n.log.Error("node: adding transport peer", "name", r.Name, "peer", r.Peer, "err", err)
				continue
			}
		}
		m.peers[id] = true
	}
	grace := uint64(removeGraceTimeouts * n.cfg.ElectionTicks)
	for id := range m.peers {
		if !want[id] {
			if _, ok := m.removeAt[id]; !ok {
				m.removeAt[id] = m.ticks + grace
			}
		}
	}
}

// tickMembership runs on every tick: drops peers whose grace ran out,
// announces this member's addresses, promotes caught-up learners.
func (n *Node) tickMembership() {
	m := &n.mem
	m.ticks++
	n.maybeResyncRestored()
	ps, _ := n.tr.(peerSetter)
	for id, at := range m.removeAt {
		if m.ticks >= at {
			delete(m.removeAt, id)
			delete(m.peers, id)
			if ps != nil {
				ps.RemovePeer(id)
			}
			n.log.Info("node: transport peer dropped", "id", fmt.Sprintf("%016x", uint64(id)))
		}
	}
	if m.removed.Load() || n.soft.Leader == raftmsg.None {
		return
	}
	every := uint64(max(n.cfg.ElectionTicks, 1))
	if m.ticks-m.lastAnnounce >= every {
		n.maybeAnnounce()
	}
	if m.ticks-m.lastProgress >= every/4+1 {
		// Status allocates: a few times per election timeout is enough
		// for promotion and the per-peer metrics.
		m.lastProgress = m.ticks
		st := n.raft.Status()
		m.metrics.updatePeers(st, n.cfg.ID, m.table.Load())
		if n.soft.Role == consensus.RoleLeader {
			n.maybePromote(st)
		}
	}
}

// maybeAnnounce proposes this member's client (and peer) address when the
// table does not hold them yet (members bootstrapped from
// --initial-cluster know only each other's peer addresses).
func (n *Node) maybeAnnounce() {
	if n.cfg.ClientAddr == "" {
		return
	}
	self, ok := n.mem.table.Load().byID(n.cfg.ID)
	if !ok || self.Client == n.cfg.ClientAddr && (n.cfg.PeerAddr == "" || self.Peer == n.cfg.PeerAddr) {
		return
	}
	n.mem.lastAnnounce = n.mem.ticks
	self.Client = n.cfg.ClientAddr
	if n.cfg.PeerAddr != "" {
		self.Peer = n.cfg.PeerAddr
	}
	data, err := appendAnnounce(nil, self)
	if err != nil {
		n.log.Error("node: cannot announce this member's addresses", "err", err)
		return
	}
	if err := n.raft.Propose([]raftmsg.Entry{{Type: raftmsg.EntryNormal, Origin: n.cfg.ID, Data: data}}); err != nil {
		n.log.Debug("node: announcement refused; retrying later", "err", err)
	}
}

// maybePromote proposes the promotion of one auto-promote learner whose
// log has caught up (thesis §4.2.1: a new server votes only once it
// holds the log, so it never stalls commits).
func (n *Node) maybePromote(st consensus.Status) {
	tab := n.mem.table.Load()
	var candidates []MemberRecord
	for _, r := range tab.members {
		if r.Learner && r.AutoPromote {
			candidates = append(candidates, r)
		}
	}
	if len(candidates) == 0 {
		return
	}
	for _, p := range st.Peers {
		i := slices.IndexFunc(candidates, func(r MemberRecord) bool { return r.ID == p.ID })
		// Caught up: it holds its own addition (in the applied table) and
		// is at most promoteLagEntries behind the leader's log.
		if i < 0 || !p.Learner || !p.RecentActive || p.Match < tab.applied || p.Match+promoteLagEntries < st.LastIndex {
			continue
		}
		r := candidates[i]
		r.Learner, r.AutoPromote = false, false
		ctx, err := appendMemberRecord(nil, r)
		if err != nil {
			continue
		}
		err = n.raft.ProposeConfChange(raftmsg.ConfChange{Type: raftmsg.ConfChangePromote, NodeID: r.ID, Context: ctx}, 0)
		if err != nil {
			n.log.Debug("node: promotion refused; retrying later", "name", r.Name, "err", err)
			return
		}
		n.log.Info("node: promoting learner that has caught up", "name", r.Name, "match", p.Match, "last", st.LastIndex)
		return // one change at a time
	}
}

// ---- applier side

// applyMembershipEntry applies e to the member table if it is a conf
// change or an announcement; it returns whether the table changed.
func (n *Node) applyMembershipEntry(e *raftmsg.Entry) bool {
	tab := n.mem.table.Load()
	var next *memberTable
	switch {
	case e.Type == raftmsg.EntryConfChange:
		cc, err := raftmsg.DecodeConfChange(e.Data)
		if err != nil {
			n.log.Error("node: undecodable conf change applied", "index", e.Index, "err", err)
			return false
		}
		next, err = tab.applyConfChange(cc, e.Index)
		if err != nil {
			n.log.Error("node: conf change with a damaged member record", "index", e.Index, "err", err)
		}
		n.mem.metrics.countChange(cc.Type)
		if e.Origin == n.cfg.ID && e.RequestID != 0 {
			// Answered by answerAppliedChanges, after the table is stored
			// and the applied index published.
			n.mem.appliedChanges = append(n.mem.appliedChanges, e.RequestID)
		}
		if cc.Type == raftmsg.ConfChangeRemove && cc.NodeID == n.cfg.ID {
			defer n.markRemoved(fmt.Sprintf("conf change at index %d", e.Index))
		}
		r, ok := next.byID(cc.NodeID)
		if !ok {
			r, _ = tab.byID(cc.NodeID)
		}
		n.log.Info("node: membership changed", "index", e.Index, "change", confChangeName(cc.Type), "name", r.Name, "id", fmt.Sprintf("%016x", uint64(cc.NodeID)))
	case e.Type == raftmsg.EntryNormal && isAnnounce(e.Data):
		a, err := decodeAnnounce(e.Data)
		if err != nil {
			n.log.Error("node: undecodable member announcement applied", "index", e.Index, "err", err)
			return false
		}
		next = tab.applyAnnounce(a, e.Index)
	default:
		return false
	}
	n.mem.table.Store(next)
	return true
}

// persistMembers hands the table to the server to write (applier).
func (n *Node) persistMembers() {
	if n.cfg.OnMembers == nil {
		return
	}
	tab := n.mem.table.Load()
	if err := n.cfg.OnMembers(slices.Clone(tab.members), tab.applied); err != nil {
		n.fail(fmt.Errorf("node: persist the member table: %w", err))
	}
}

func confChangeName(t raftmsg.ConfChangeType) string {
	switch t {
	case raftmsg.ConfChangeAddLearner:
		return "add-learner"
	case raftmsg.ConfChangePromote:
		return "promote"
	case raftmsg.ConfChangeRemove:
		return "remove"
	}
	return "unknown"
}

// answerAppliedChanges answers the conf-change requests of the batch just
// applied (applier, after publishing the applied index).
func (n *Node) answerAppliedChanges() {
	for _, id := range n.mem.appliedChanges {
		n.completeConfChange(id)
	}
	n.mem.appliedChanges = n.mem.appliedChanges[:0]
}

func (n *Node) completeConfChange(id uint64) {
	n.mem.mu.Lock()
	ch := n.mem.waiters[id]
	delete(n.mem.waiters, id)
	n.mem.mu.Unlock()
	if ch != nil {
		close(ch)
	}
}

// ---- requests (any goroutine)

// inLoop runs f on the raft loop and waits for it; false when the loop
// did not take it before the deadline or the member stopped.
func (n *Node) inLoop(deadline time.Time, f func()) bool {
	done := make(chan struct{})
	call := func() { f(); close(done) }
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	select {
	case n.mem.calls <- call:
	case <-timer.C:
		return false
	case <-n.stop:
		return false
	}
	select {
	case <-done:
		return true
	case <-timer.C:
	case <-n.stop:
	}
	return false
}

// proposeConfChange proposes cc on this member (the leader) and waits
// until it is applied here.
func (n *Node) proposeConfChange(ctx context.Context, cc raftmsg.ConfChange) error {
	if n.mem.removed.Load() || n.stopping.Load() {
		return unavailableErr("this member is shutting down or was removed")
	}
	deadline := time.Now().Add(n.cfg.RequestTimeout)
	id := n.mem.reqSeq.Add(1)
	applied := make(chan struct{})
	n.mem.mu.Lock()
	n.mem.waiters[id] = applied
	n.mem.mu.Unlock()
	forget := func() {
		n.mem.mu.Lock()
		delete(n.mem.waiters, id)
		n.mem.mu.Unlock()
	}
	var err error
	for {
		if !n.inLoop(deadline, func() {
			// The previous change may be applied with its client answered
			// while the loop has not yet told the core (appliedNote).
			n.ackApplied()
			err = n.raft.ProposeConfChange(cc, id)
		}) {
			forget()
			// Not taken, or taken and not answered in time: in the second
			// case the change may be in the log.
			return &ops.ClusterError{Status: fasthttp.StatusGatewayTimeout, Code: "timeout", Message: "the membership change was not proposed in time; it may have been"}
		}
		// A new leader commits its no-op within a round trip (thesis
		// §4.1: no change before that): wait for it rather than refuse.
		if !errors.Is(err, consensus.ErrNotReady) || time.Until(deadline) < n.cfg.TickInterval {
			break
		}
		select {
		case <-time.After(n.cfg.TickInterval):
			continue
		case <-ctx.Done():
		case <-n.stop:
		}
		forget()
		return unavailableErr("gave up waiting for the new leader's first commit; nothing was proposed")
	}
	if err != nil {
		forget()
		return confChangeError(err)
	}
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	select {
	case <-applied:
		return nil
	case <-timer.C:
	case <-ctx.Done():
	case <-n.stop:
	}
	forget()
	return &ops.ClusterError{Status: fasthttp.StatusGatewayTimeout, Code: "timeout", Message: "the membership change was proposed but not applied in time; it may still be"}
}

func unavailableErr(msg string) *ops.ClusterError {
	return &ops.ClusterError{Status: fasthttp.StatusServiceUnavailable, Code: "unavailable", Message: msg, RetryAfter: retryAfter}
}

// confChangeError maps a refusal of the core to the client's answer.
func confChangeError(err error) *ops.ClusterError {
	e := func(status int, code, msg string) *ops.ClusterError {
		return &ops.ClusterError{Status: status, Code: code, Message: msg + ": " + err.Error()}
	}
	switch {
	case errors.Is(err, consensus.ErrConfChangePending):
		return e(fasthttp.StatusConflict, "change_pending", "another membership change is not applied yet; retry once it is")
	case errors.Is(err, consensus.ErrLastVoter):
		return e(fasthttp.StatusConflict, "last_voter", "refusing to remove the last voter")
	case errors.Is(err, consensus.ErrLearnerBehind):
		return e(fasthttp.StatusPreconditionFailed, "learner_behind", "the learner has not caught up with the leader's log yet")
	case errors.Is(err, consensus.ErrMemberExists):
		return e(fasthttp.StatusConflict, "member_exists", "already a member (or already a voter)")
	case errors.Is(err, consensus.ErrUnknownMember):
		return e(fasthttp.StatusNotFound, "unknown_member", "no such member (or not a learner)")
	case errors.Is(err, consensus.ErrTooManyMembers):
		return e(fasthttp.StatusConflict, "too_many_members", "the cluster is full")
	case errors.Is(err, consensus.ErrInvalidProposal):
		return e(fasthttp.StatusBadRequest, "bad_request", "invalid membership change")
	}
	// ErrNotLeader, ErrNotReady, ErrTransferring, ErrNotQuorum and the
	// like: nothing was appended; retrying later can succeed.
	ce := e(fasthttp.StatusServiceUnavailable, "unavailable", "membership change refused for now")
	ce.RetryAfter = retryAfter
	return ce
}

// MembershipBackend returns the member's implementation of the
// membership endpoints' backend. clusterID is checked against joining
// nodes; probeID asks a node at a peer address for its member id (nil:
// a request must carry the id).
func (n *Node) MembershipBackend(clusterID uint64, probeID func(ctx context.Context, peer, name string) (raftmsg.NodeID, error)) ops.MembershipBackend {
	return membershipBackend{n: n, clusterID: clusterID, probeID: probeID}
}

type membershipBackend struct {
	n         *Node
	clusterID uint64
	probeID   func(ctx context.Context, peer, name string) (raftmsg.NodeID, error)
}

func (b membershipBackend) Leader() (bool, string) {
	n := b.n
	if n.isLeader.Load() && !n.mem.removed.Load() {
		return true, ""
	}
	r, _ := n.mem.table.Load().byID(n.Leader())
	return false, r.Client
}

func (b membershipBackend) result(member raftmsg.NodeID) ops.MembershipResult {
	n := b.n
	tab := n.mem.table.Load()
	res := ops.MembershipResult{Leader: n.memberName(n.Leader())}
	members := slices.Clone(tab.members)
	slices.SortFunc(members, func(a, b MemberRecord) int { return strings.Compare(a.Name, b.Name) })
	for _, r := range members {
		mi := memberInfo(r)
		res.Members = append(res.Members, mi)
		if r.ID == member {
			res.Member = &mi
		}
	}
	return res
}

func memberInfo(r MemberRecord) ops.MemberInfo {
	return ops.MemberInfo{Name: r.Name, ID: fmt.Sprintf("%016x", uint64(r.ID)), Peer: r.Peer, Client: r.Client, Voter: !r.Learner}
}

func (b membershipBackend) AddMember(ctx context.Context, req ops.AddMemberRequest) (ops.MembershipResult, error) {
	n := b.n
	if req.ClusterID != "" && req.ClusterID != fmt.Sprintf("%016x", b.clusterID) {
		return ops.MembershipResult{}, ops.BadRequest("the node belongs to another cluster (cluster id %s, this cluster %016x): check --initial-cluster-token", req.ClusterID, b.clusterID)
	}
	rec := MemberRecord{Name: req.Name, Peer: req.Peer, Client: req.Client, Learner: true, AutoPromote: req.AutoPromote}
	cctx, err := appendMemberRecord(nil, rec)
	if err != nil {
		return ops.MembershipResult{}, ops.BadRequest("%v", err)
	}
	if !validName(req.Name) {
		return ops.MembershipResult{}, ops.BadRequest("member name %q: letters, digits, '.', '_', '-', at most 63", req.Name)
	}
	var id raftmsg.NodeID
	switch {
	case req.ID != "":
		var v uint64
		if _, err := fmt.Sscanf(req.ID, "%x", &v); err != nil || v == 0 || len(req.ID) > 16 {
			return ops.MembershipResult{}, ops.BadRequest("id %q: want a non-zero hex member id", req.ID)
		}
		id = raftmsg.NodeID(v)
	case b.probeID != nil:
		pctx, cancel := context.WithTimeout(ctx, n.cfg.RequestTimeout)
		id, err = b.probeID(pctx, req.Peer, req.Name)
		cancel()
		if err != nil {
			return ops.MembershipResult{}, &ops.ClusterError{Status: fasthttp.StatusBadRequest, Code: "unreachable",
				Message: fmt.Sprintf("cannot learn the member id of %s at %s (start it with --join, or give its \"id\"): %v", req.Name, req.Peer, err)}
		}
	default:
		return ops.MembershipResult{}, ops.BadRequest("the new member's \"id\" is required")
	}
	tab := n.mem.table.Load()
	if old, ok := tab.byName(req.Name); ok {
		if old.ID == id {
			return b.result(id), nil // a retried join: already done
		}
		return ops.MembershipResult{}, &ops.ClusterError{Status: fasthttp.StatusConflict, Code: "member_exists",
			Message: fmt.Sprintf("a member named %q already exists with id %016x; if its data dir was lost, remove it first (DELETE /v1/cluster/members/%s), wipe the data dir, then add it again", req.Name, uint64(old.ID), req.Name)}
	}
	if old, ok := tab.byID(id); ok {
		return ops.MembershipResult{}, &ops.ClusterError{Status: fasthttp.StatusConflict, Code: "member_exists",
			Message: fmt.Sprintf("member id %016x already belongs to %q", uint64(id), old.Name)}
	}
	if err := n.proposeConfChange(ctx, raftmsg.ConfChange{Type: raftmsg.ConfChangeAddLearner, NodeID: id, Context: cctx}); err != nil {
		return ops.MembershipResult{}, err
	}
	return b.result(id), nil
}

func (b membershipBackend) lookup(name string) (MemberRecord, error) {
	r, ok := b.n.mem.table.Load().byName(name)
	if !ok {
		return r, &ops.ClusterError{Status: fasthttp.StatusNotFound, Code: "unknown_member", Message: fmt.Sprintf("no member named %q", name)}
	}
	return r, nil
}

func (b membershipBackend) PromoteMember(ctx context.Context, name string) (ops.MembershipResult, error) {
	r, err := b.lookup(name)
	if err != nil {
		return ops.MembershipResult{}, err
	}
	if !r.Learner {
		return ops.MembershipResult{}, &ops.ClusterError{Status: fasthttp.StatusConflict, Code: "member_exists", Message: fmt.Sprintf("%q is a voter already", name)}
	}
	r.Learner, r.AutoPromote = false, false
	cctx, err := appendMemberRecord(nil, r)
	if err != nil {
		return ops.MembershipResult{}, ops.BadRequest("%v", err)
	}
	if err := b.n.proposeConfChange(ctx, raftmsg.ConfChange{Type: raftmsg.ConfChangePromote, NodeID: r.ID, Context: cctx}); err != nil {
		return ops.MembershipResult{}, err
	}
	return b.result(r.ID), nil
}

func (b membershipBackend) RemoveMember(ctx context.Context, name string) (ops.MembershipResult, error) {
	r, err := b.lookup(name)
	if err != nil {
		return ops.MembershipResult{}, err
	}
	cctx, err := appendMemberRecord(nil, r)
	if err != nil {
		return ops.MembershipResult{}, ops.BadRequest("%v", err)
	}
	if err := b.n.proposeConfChange(ctx, raftmsg.ConfChange{Type: raftmsg.ConfChangeRemove, NodeID: r.ID, Context: cctx}); err != nil {
		return ops.MembershipResult{}, err
	}
	res := b.result(r.ID)
	mi := memberInfo(r)
	res.Member = &mi
	return res, nil
}

func (b membershipBackend) TransferLeader(ctx context.Context, to string) (ops.MembershipResult, error) {
	n := b.n
	var target raftmsg.NodeID
	if to != "" {
		r, err := b.lookup(to)
		if err != nil {
			return ops.MembershipResult{}, err
		}
		if r.Learner {
			return ops.MembershipResult{}, &ops.ClusterError{Status: fasthttp.StatusConflict, Code: "not_voter", Message: fmt.Sprintf("%q is a learner: only a voter can lead", to)}
		}
		target = r.ID
	}
	if err := n.TransferLeadership(ctx, target); err != nil {
		return ops.MembershipResult{}, err
	}
	return b.result(raftmsg.None), nil
}

// TransferLeadership moves leadership from this member (the leader) to
// voter `to` (None: the most up-to-date other voter that is active) and
// waits until another member leads (thesis §3.10).
func (n *Node) TransferLeadership(ctx context.Context, to raftmsg.NodeID) error {
	timeout := time.Duration(transferWaitTimeouts*n.cfg.ElectionTicks) * n.cfg.TickInterval
	deadline := time.Now().Add(timeout)
	var err error
	ok := n.inLoop(deadline, func() {
		if n.soft.Role != consensus.RoleLeader {
			err = unavailableErr("this member does not lead")
			return
		}
		if to == raftmsg.None {
			to = n.bestTransferee()
			if to == raftmsg.None {
				err = &ops.ClusterError{Status: fasthttp.StatusConflict, Code: "no_transferee", Message: "no other active voter to hand leadership to"}
				return
			}
		}
		if to == n.cfg.ID {
			return
		}
		if e := n.raft.TransferLeadership(to); e != nil {
			err = &ops.ClusterError{Status: fasthttp.StatusConflict, Code: "not_voter", Message: fmt.Sprintf("cannot transfer leadership: %v", e)}
		}
	})
	if !ok {
		return unavailableErr("the member did not take the transfer request in time")
	}
	if err != nil || to == n.cfg.ID {
		return err
	}
	tick := time.NewTicker(n.cfg.TickInterval)
	defer tick.Stop()
	for {
		if l := n.Leader(); l == to || l != raftmsg.None && l != n.cfg.ID {
			return nil
		}
		if time.Now().After(deadline) {
			return &ops.ClusterError{Status: fasthttp.StatusGatewayTimeout, Code: "timeout", Message: "leadership did not move in time (the target may be down or behind)"}
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return &ops.ClusterError{Status: fasthttp.StatusGatewayTimeout, Code: "timeout", Message: "gave up waiting for the transfer"}
		case <-n.stop:
			return unavailableErr("stopped")
		}
	}
}

// bestTransferee is the active voter, other than this member, with the
// highest match index (raft loop, on the leader).
func (n *Node) bestTransferee() raftmsg.NodeID {
	st := n.raft.Status()
	best, bestMatch := raftmsg.None, uint64(0)
	for _, p := range st.Peers {
		if p.ID == n.cfg.ID || p.Learner || !p.RecentActive || !slices.Contains(st.Conf.Voters, p.ID) {
			continue
		}
		if best == raftmsg.None || p.Match > bestMatch {
			best, bestMatch = p.ID, p.Match
		}
	}
	return best
}

func validName(s string) bool {
	if s == "" || len(s) > 63 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || i > 0 && (c == '.' || c == '_' || c == '-')
		if !ok {
			return false
		}
	}
	return true
}

// memberTableOf builds the starting member table from cfg: Table, or the
// bootstrap Members (every one a voter).
func memberTableOf(cfg Config) (*memberTable, error) {
	if cfg.Table != nil {
		t := newMemberTable(cfg.Table, cfg.TableApplied)
		if err := t.check(); err != nil {
			return nil, fmt.Errorf("node: member table: %w", err)
		}
		return t, nil
	}
	recs := make([]MemberRecord, 0, len(cfg.Members))
	for id, name := range cfg.Members {
		recs = append(recs, MemberRecord{ID: id, Name: name})
	}
	t := newMemberTable(recs, 0)
	if err := t.check(); err != nil {
		return nil, fmt.Errorf("node: members: %w", err)
	}
	return t, nil
}

// restoreMembers replaces the member table with the one of a snapshot
// installed at index (applier), persists it, and has the raft loop learn
// the addresses and resync the transport's peers: the configuration the
// snapshot brought may name members whose conf-change entries this member
// never received.
func (n *Node) restoreMembers(members []MemberRecord, index uint64) {
	if len(members) == 0 {
		return // a snapshot written without a table: keep ours
	}
	tab := newMemberTable(members, index)
	if err := tab.check(); err != nil {
		n.log.Error("node: installed snapshot's member table refused", "err", err)
		return
	}
	n.mem.table.Store(tab)
	n.persistMembers()
	if _, ok := tab.byID(n.cfg.ID); !ok {
		n.markRemoved(fmt.Sprintf("the snapshot installed at index %d does not list it", index))
	}
	n.mem.tableRestored.Store(true) // the raft loop resyncs at its next tick
}

// maybeResyncRestored merges a table restored from a snapshot into the
// addresses and resyncs the transport's peers (raft loop).
func (n *Node) maybeResyncRestored() {
	if !n.mem.tableRestored.Swap(false) {
		return
	}
	for _, r := range n.mem.table.Load().members {
		n.mem.addrs[r.ID] = r
	}
	n.syncPeers(n.raft.ConfState())
}

// tableBlob is the snapshot membership blob of the current member table.
func (n *Node) tableBlob() ([]byte, error) {
	return encodeMembershipBlob(snapshotMembersOf(n.mem.table.Load().members))
}
