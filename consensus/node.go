package consensus

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"

	"github.com/edgekv/edgekv/consensus/raftmsg"
	"github.com/edgekv/edgekv/consensus/tracker"
)

// Role is a node's part in the protocol.
type Role uint8

const (
	RoleFollower Role = iota
	// RolePreCandidate: asking whether it could win before disturbing
	// anyone (thesis §9.6); its term is unchanged.
	RolePreCandidate
	RoleCandidate
	RoleLeader
)

func (r Role) String() string {
	switch r {
	case RoleFollower:
		return "follower"
	case RolePreCandidate:
		return "pre-candidate"
	case RoleCandidate:
		return "candidate"
	case RoleLeader:
		return "leader"
	}
	return "Role(?)"
}

// Errors returned by Propose. Each maps to a raftmsg.RejectReason through
// RejectReasonOf, so the runtime can pick the client's status.
var (
	ErrNoLeader   = errors.New("consensus: no leader known")
	ErrNotQuorum  = errors.New("consensus: leader has not heard from a quorum recently")
	ErrOverloaded = errors.New("consensus: too many uncommitted bytes on the leader")
	// ErrInvalidProposal: the proposal itself is malformed (empty, wrong
	// entry type); it is the caller's bug, not a cluster condition.
	ErrInvalidProposal = errors.New("consensus: invalid proposal")
	// ErrInvalidMessage wraps every message Step refuses.
	ErrInvalidMessage = errors.New("consensus: invalid message")
	// ErrBadAck wraps misuse of AckPersisted and AckApplied.
	ErrBadAck = errors.New("consensus: bad acknowledgement")
	// ErrBadConfig wraps every configuration New refuses.
	ErrBadConfig = errors.New("consensus: bad config")
)

// RejectReasonOf maps a Propose error to the reason a client is told;
// RejectNone for nil or an error that is not a refusal.
func RejectReasonOf(err error) raftmsg.RejectReason {
	switch {
	case errors.Is(err, ErrNoLeader):
		return raftmsg.RejectNoLeader
	case errors.Is(err, ErrNotQuorum):
		return raftmsg.RejectNotQuorum
	case errors.Is(err, ErrOverloaded):
		return raftmsg.RejectOverloaded
	case errors.Is(err, ErrNotReady):
		return raftmsg.RejectNotReady
	case errors.Is(err, ErrTransferring):
		return raftmsg.RejectTransferring
	case errors.Is(err, ErrNotLeader):
		return raftmsg.RejectNoLeader
	}
	return raftmsg.RejectNone
}

// Config configures a Node. Zero limits take the defaults below.
type Config struct {
	// ID is this node's id. It need not be a member: a node joining a
	// running cluster starts with that cluster's current voters (and its
	// own id absent), and is no member, never campaigning, until its log
	// makes it one (see doc.go, Membership).
	ID raftmsg.NodeID
	// Voters is the bootstrap configuration: every member votes and counts
	// for quorums. At bootstrap every member is given the same list. It is
	// ignored when Snapshot is not empty (Snapshot.Conf is the base then);
	// conf-change entries in Entries apply on top of either.
	Voters []raftmsg.NodeID
	// HardState, Snapshot, Entries and Applied are the recovered durable
	// state (all zero at bootstrap). Entries are every durable entry after
	// Snapshot.Index, contiguous; Applied is the state machine's applied
	// index (Snapshot.Index <= Applied <= HardState.Commit). Entries after
	// Applied up to the commit index come back in CommittedEntries.
	HardState raftmsg.HardState
	Snapshot  raftmsg.SnapshotMeta
	Entries   []raftmsg.Entry
	Applied   uint64
	// ElectionTicks T: a follower that hears from no leader for a random
	// number of ticks in [T, 2T) starts a pre-vote (paper §5.2). A leader
	// steps down when it has not heard from a quorum for T ticks.
	ElectionTicks int
	// HeartbeatTicks: the leader's heartbeat period; < ElectionTicks.
	HeartbeatTicks int
	// RandSeed seeds the node's own PCG source: the only randomness (the
	// election timeout). Give each node a different seed.
	RandSeed uint64
	// MaxInflightMsgs and MaxInflightBytes bound the appends in flight to
	// one follower in pipelined replication. An entry larger than
	// MaxInflightBytes still goes out, alone, once the window is empty.
	MaxInflightMsgs  int
	MaxInflightBytes uint64
	// MaxMsgBytes bounds the entry payload of one append message (an entry
	// larger than it travels alone).
	MaxMsgBytes uint64
	// MaxUncommittedBytes: the leader refuses proposals (ErrOverloaded)
	// while its uncommitted tail is larger.
	MaxUncommittedBytes uint64
	// MaxApplyBytes bounds CommittedEntries in one Ready (at least one
	// entry is always given).
	MaxApplyBytes uint64
	// MaxLearnerLagEntries: ProposeConfChange promotes a learner only
	// when its log is at most this many entries behind the leader's
	// (thesis §4.2.1).
	MaxLearnerLagEntries uint64
}

// Defaults for zero Config fields.
const (
	DefaultMaxInflightMsgs     = 256
	DefaultMaxInflightBytes    = 8 << 20
	DefaultMaxMsgBytes         = 1 << 20
	DefaultMaxUncommittedBytes = 64 << 20
	DefaultMaxApplyBytes       = 16 << 20
	// MaxVoters bounds the membership: quorum arithmetic is quadratic-free
	// but the per-voter scans are linear, and Raft clusters are small.
	MaxVoters = 64
)

// SoftState is the volatile state the runtime shows and routes by.
type SoftState struct {
	Role   Role
	Leader raftmsg.NodeID
	Term   uint64
	// Removed: a committed configuration change removed this node. The
	// runtime stops serving and shuts down; the core no longer campaigns.
	Removed bool
}

// RejectedProposal names a proposal refused after Propose returned, by a
// leader this node forwarded it to.
type RejectedProposal struct {
	RequestID uint64
	Reason    raftmsg.RejectReason
}

// Ready is one batch of work for the runtime; see the package comment for
// the order in which it must be carried out.
type Ready struct {
	// Seq numbers Readys 1, 2, 3...; AckPersisted takes it.
	Seq uint64
	// SoftState is the current role, leader and term (always filled).
	SoftState SoftState
	// HardState must be persisted when not empty (IsEmpty).
	HardState raftmsg.HardState
	// Entries must be appended durably; the first one replaces the entry
	// at its index and every entry after it.
	Entries []raftmsg.Entry
	// CommittedEntries may be applied now, in order; they are durable here.
	CommittedEntries []raftmsg.Entry
	// Messages may be sent at once.
	Messages []raftmsg.Message
	// MessagesAfterPersist may be sent only once this Ready's and every
	// earlier Ready's HardState and Entries are durable.
	MessagesAfterPersist []raftmsg.Message
	// RejectedProposals: forwarded proposals the leader refused.
	RejectedProposals []RejectedProposal
	// ReadStates: reads that may be served once the state machine has
	// applied up to their Index. RejectedReads: reads refused.
	ReadStates    []ReadState
	RejectedReads []RejectedRead
	// HeartbeatRound, when not zero, is the heartbeat round that Messages
	// carry: note the monotonic clock when sending them (leases, see
	// LeaseRead).
	HeartbeatRound uint64
	// ConfState, when not nil, is the configuration now in force (it
	// changed since the previous Ready): add and remove transport peers.
	// Append-time (thesis §4.1): it may be uncommitted, and may revert.
	// The configuration recovered by New is not reported: read ConfState()
	// after New.
	ConfState *raftmsg.ConfState
	// Snapshot, when not empty, is a snapshot received from the leader
	// (MsgSnap) that the core accepted: make the held file of this index
	// durable and replace the log with it BEFORE persisting HardState and
	// Entries, and restore the state machine from it before applying any
	// CommittedEntries after it. A held snapshot file that the Ready
	// following its Step does not name was refused: discard it.
	Snapshot raftmsg.SnapshotMeta
}

type persistRecord struct {
	seq       uint64
	lastIndex uint64 // entries up to here are durable once seq is
}

type heldMsgs struct {
	seq  uint64
	msgs []raftmsg.Message
}

// Node is the Raft state machine of one member. It is not safe for
// concurrent use: one goroutine owns it.
type Node struct {
	id  raftmsg.NodeID
	cfg Config
	rng *rand.Rand

	role Role
	term uint64
	vote raftmsg.NodeID
	lead raftmsg.NodeID
	log  raftLog

	// Membership (membership.go). peers is every tracked member, sorted:
	// the voters and learners of the configuration in force, and on the
	// leader the leaving peers; index i owns kinds[i], prs[i], votes[i]
	// and readAcks[i]. Only kindVoter peers count for any quorum.
	peers     []raftmsg.NodeID
	kinds     []peerKind
	selfPos   int // -1: this node is not a member
	prs       []*tracker.Progress
	votes     []int8   // this round: +1 granted, -1 rejected, 0 unknown
	matches   []uint64 // scratch for voterQuorumIndex, len(peers)
	scratch   []uint64
	numVoters int
	quorumAt  int // majority of the voters

	conf          raftmsg.ConfState // in force: latestConf()
	confBase      raftmsg.ConfState // at confBaseIndex (snapshot or bootstrap)
	confBaseIndex uint64
	confLog       []confRecord // conf-change entries after confBaseIndex, ascending
	confChanged   bool         // conf differs from the last Ready's
	removed       bool
	// committedMember: this node is a member of the configuration at its
	// commit index (so a snapshot without it means it was removed).
	committedMember bool
	leaving         []leavingPeer

	// Snapshots (snapshot.go): snap describes the entries before the log
	// (index, term, configuration); pendingSnapshot: an installed one is
	// not handed out in a Ready yet.
	snap            raftmsg.SnapshotMeta
	pendingSnapshot bool
	// confHistoryUnknown: started as a non-member without a snapshot (a
	// joiner): its base is some later configuration, so it cannot tell
	// the configuration at an index its log may not reach past, and
	// takes no snapshot until it installs one (snapshotConfAt).
	confHistoryUnknown bool

	ticks                     uint64 // monotonic, for LastHeardTick
	electionElapsed           int
	heartbeatElapsed          int
	randomizedElectionTimeout int
	uncommittedBytes          uint64

	msgs, spareMsgs         []raftmsg.Message
	msgsAfter               []raftmsg.Message
	rejected, spareRejected []RejectedProposal
	heldAfter               ring[heldMsgs]
	freeAfter               [][]raftmsg.Message
	pendingPersist          ring[persistRecord]

	// Leadership transfer (transfer.go), on the leader.
	leadTransferee  raftmsg.NodeID
	transferElapsed int

	// ReadIndex (read.go): rounds of heartbeats confirm leadership.
	readRound                    uint64 // last heartbeat round started; monotonic across terms
	readRoundOpen                bool   // its heartbeats are not handed out yet
	confirmedRound               uint64 // newest round a majority answered (this term)
	termFirstRound               uint64 // readRound when this term's leadership began
	transferredInTerm            bool   // a transfer started in this term: no lease
	restarted                    bool   // started from a non-empty hard state
	heardLeader                  bool   // leaderHeardTick is set
	leaderHeardTick              uint64 // ticks when a leader last reached us
	readAcks                     []uint64
	pendingReads                 ring[pendingRead]
	readStates, spareReadStates  []ReadState
	rejectedReads, spareRejReads []RejectedRead

	readySeq, ackedSeq uint64
	// selfElectSeq: a sole voter's campaign won on its own vote; it leads
	// once the Ready with this Seq (its term and vote) is durable.
	selfElectSeq uint64
	prevSoft     SoftState
	prevHard     raftmsg.HardState
}

// New makes a node from cfg; it starts as a follower of no leader.
func New(cfg Config) (*Node, error) {
	if err := fillDefaults(&cfg); err != nil {
		return nil, err
	}
	n := &Node{id: cfg.ID, cfg: cfg, rng: rand.New(rand.NewPCG(cfg.RandSeed, uint64(cfg.ID)))}
	n.selfPos = -1
	hs, snap := cfg.HardState, cfg.Snapshot
	n.term, n.vote = hs.Term, hs.Vote
	n.log = raftLog{snapIndex: snap.Index, snapTerm: snap.Term}
	n.log.ents = make([]raftmsg.Entry, 0, len(cfg.Entries)+64)
	prevTerm := snap.Term
	for i, e := range cfg.Entries {
		if e.Index != snap.Index+1+uint64(i) || e.Term < prevTerm || e.Term > hs.Term {
			return nil, fmt.Errorf("%w: recovered entry %d has index %d term %d (snapshot %d/%d, term %d)", ErrBadConfig, i, e.Index, e.Term, snap.Index, snap.Term, hs.Term)
		}
		if e.Type == raftmsg.EntryConfChange {
			if _, err := raftmsg.DecodeConfChange(e.Data); err != nil {
				return nil, fmt.Errorf("%w: recovered entry %d: %w", ErrBadConfig, e.Index, err)
			}
		}
		prevTerm = e.Term
		n.log.ents = append(n.log.ents, e)
	}
	last := n.log.lastIndex()
	// A commit index below the snapshot is fine: a snapshot holds only
	// committed entries, and a crash may come between making a received
	// snapshot durable and the hard state that names it committed.
	if snap.Term > hs.Term || snap.IsEmpty() != (snap.Term == 0) {
		return nil, fmt.Errorf("%w: snapshot %d/%d with term %d", ErrBadConfig, snap.Index, snap.Term, hs.Term)
	}
	if hs.Commit > last {
		return nil, fmt.Errorf("%w: commit %d outside the recovered log (%d, %d]", ErrBadConfig, hs.Commit, snap.Index, last)
	}
	if cfg.Applied < snap.Index || cfg.Applied > max(hs.Commit, snap.Index) {
		return nil, fmt.Errorf("%w: applied %d outside [%d, %d]", ErrBadConfig, cfg.Applied, snap.Index, max(hs.Commit, snap.Index))
	}
	n.log.committed = max(hs.Commit, snap.Index)
	n.log.applied, n.log.applying = cfg.Applied, cfg.Applied
	n.log.persisted = last
	n.log.unstableFrom = last + 1
	// The configuration in force after a restart: the base (snapshot's or
	// bootstrap) plus every conf-change entry in the log (append-time).
	n.confBase, n.confBaseIndex = raftmsg.ConfState{Voters: slices.Sorted(slices.Values(cfg.Voters))}, 0
	if !snap.IsEmpty() {
		n.confBase, n.confBaseIndex = raftmsg.ConfState{Voters: slices.Sorted(slices.Values(snap.Conf.Voters)), Learners: slices.Sorted(slices.Values(snap.Conf.Learners))}, snap.Index
	}
	n.setConf(n.confBase)
	n.confAfterAppend(0, n.log.ents)
	n.committedMember = isMember(n.confBase, n.id)
	n.noteCommit(n.confBaseIndex, n.log.committed)
	n.confChanged = false // the runtime knows what it recovered: ConfState()
	if !snap.IsEmpty() {
		n.snap = raftmsg.SnapshotMeta{Index: snap.Index, Term: snap.Term, Conf: cloneConf(n.confBase)}
	}
	n.confHistoryUnknown = snap.IsEmpty() && !slices.Contains(cfg.Voters, cfg.ID)
	n.prevHard = n.hardState()
	n.restarted = !hs.IsEmpty()
	n.becomeFollower(n.term, raftmsg.None)
	n.prevSoft = n.softState()
	return n, nil
}

func fillDefaults(cfg *Config) error {
	switch {
	case cfg.ID == raftmsg.None:
		return fmt.Errorf("%w: node id 0", ErrBadConfig)
	case cfg.HeartbeatTicks <= 0 || cfg.ElectionTicks <= cfg.HeartbeatTicks:
		return fmt.Errorf("%w: need 0 < HeartbeatTicks (%d) < ElectionTicks (%d)", ErrBadConfig, cfg.HeartbeatTicks, cfg.ElectionTicks)
	}
	base := raftmsg.ConfState{Voters: cfg.Voters}
	if !cfg.Snapshot.IsEmpty() {
		base = cfg.Snapshot.Conf
	}
	if err := validConf(base); err != nil {
		return fmt.Errorf("%w: %w", ErrBadConfig, err)
	}
	if cfg.MaxInflightMsgs <= 0 {
		cfg.MaxInflightMsgs = DefaultMaxInflightMsgs
	}
	if cfg.MaxInflightBytes == 0 {
		cfg.MaxInflightBytes = DefaultMaxInflightBytes
	}
	if cfg.MaxMsgBytes == 0 {
		cfg.MaxMsgBytes = DefaultMaxMsgBytes
	}
	if cfg.MaxUncommittedBytes == 0 {
		cfg.MaxUncommittedBytes = DefaultMaxUncommittedBytes
	}
	if cfg.MaxApplyBytes == 0 {
		cfg.MaxApplyBytes = DefaultMaxApplyBytes
	}
	if cfg.MaxLearnerLagEntries == 0 {
		cfg.MaxLearnerLagEntries = DefaultMaxLearnerLagEntries
	}
	return nil
}

func (n *Node) hardState() raftmsg.HardState {
	return raftmsg.HardState{Term: n.term, Vote: n.vote, Commit: n.log.committed}
}

func (n *Node) softState() SoftState {
	return SoftState{Role: n.role, Leader: n.lead, Term: n.term, Removed: n.removed}
}

// ID is this node's id.
func (n *Node) ID() raftmsg.NodeID { return n.id }

// LastIndex is the index of the last entry in the node's log (durable or not).
func (n *Node) LastIndex() uint64 { return n.log.lastIndex() }

// LogTerm returns the term of the entry at index i, and false when i is not
// in the log kept in memory.
func (n *Node) LogTerm(i uint64) (uint64, bool) { return n.log.term(i) }

// HardState returns the current term, vote and commit index (durable or
// not).
func (n *Node) HardState() raftmsg.HardState { return n.hardState() }

// SoftState returns the current role, leader and term.
func (n *Node) SoftState() SoftState { return n.softState() }

// CheckInvariants verifies the node's internal invariants in O(1) time, and
// with deep also every log entry (O(log length)); tests and the simulator
// call it after every step. It returns nil when all hold.
func (n *Node) CheckInvariants(deep bool) error {
	if err := n.log.checkInvariants(deep); err != nil {
		return fmt.Errorf("node %d log: %w", n.id, err)
	}
	if n.log.lastTerm() > n.term {
		return fmt.Errorf("node %d: last log term %d above current term %d", n.id, n.log.lastTerm(), n.term)
	}
	if n.role == RoleLeader && n.lead != n.id || n.role != RoleLeader && n.lead == n.id {
		return fmt.Errorf("node %d: role %v with leader %d", n.id, n.role, n.lead)
	}
	if err := n.checkConfInvariants(); err != nil {
		return fmt.Errorf("node %d membership: %w", n.id, err)
	}
	if err := n.checkSnapshotInvariants(); err != nil {
		return fmt.Errorf("node %d snapshot: %w", n.id, err)
	}
	return nil
}

func (n *Node) pos(id raftmsg.NodeID) int {
	for i, v := range n.peers {
		if v == id {
			return i
		}
	}
	return -1
}

// ---- role changes: the only places that set n.role (paper Figure 2,
// "Rules for Servers").

func (n *Node) reset(term uint64) {
	if term != n.term {
		n.term = term
		n.vote = raftmsg.None
	}
	n.lead = raftmsg.None
	n.electionElapsed = 0
	n.heartbeatElapsed = 0
	// Randomized in [T, 2T) so that split votes are rare (paper §5.2).
	n.randomizedElectionTimeout = n.cfg.ElectionTicks + n.rng.IntN(n.cfg.ElectionTicks)
	clear(n.votes)
	n.leadTransferee = raftmsg.None
	n.selfElectSeq = 0
}

func (n *Node) becomeFollower(term uint64, lead raftmsg.NodeID) {
	if n.role == RoleLeader {
		n.abortReads()
		n.role = RoleFollower
		n.dropLeaving()
	}
	n.reset(term)
	n.role = RoleFollower
	n.lead = lead
}

func (n *Node) becomePreCandidate() {
	if n.role == RoleLeader {
		panic("consensus: leader becoming pre-candidate")
	}
	// Pre-vote changes neither term nor vote (thesis §9.6).
	n.reset(n.term)
	n.role = RolePreCandidate
}

func (n *Node) becomeCandidate() {
	if n.role == RoleLeader || !n.mayCampaign() {
		panic(fmt.Sprintf("consensus: %v (voter %v) becoming candidate", n.role, n.selfVoter()))
	}
	n.reset(n.term + 1)
	n.vote = n.id
	n.role = RoleCandidate
}

func (n *Node) becomeLeader() {
	if n.role != RoleCandidate {
		panic(fmt.Sprintf("consensus: %v becoming leader", n.role))
	}
	n.reset(n.term)
	n.role = RoleLeader
	n.lead = n.id
	last := n.log.lastIndex()
	for i, pr := range n.prs {
		pr.Reset(last + 1)
		// Every follower gets one election timeout to answer (check-quorum).
		pr.LastHeardTick = n.ticks
		if i == n.selfPos {
			pr.Match = n.log.persisted
		}
	}
	clear(n.readAcks)
	n.termFirstRound, n.confirmedRound = n.readRound, n.readRound
	n.transferredInTerm = false
	n.uncommittedBytes = 0
	for i := n.log.committed + 1; i <= last; i++ {
		n.uncommittedBytes += n.log.ents[i-n.log.snapIndex-1].PayloadBytes()
	}
	// A no-op of the new term lets earlier-term entries commit (§5.4.2, §8).
	noop := raftmsg.Entry{Term: n.term, Index: last + 1, Type: raftmsg.EntryNoop}
	n.log.append(noop)
	n.uncommittedBytes += noop.PayloadBytes()
	n.bcastAppend(false)
}

// ---- output helpers

func (n *Node) send(m raftmsg.Message) {
	m.From = n.id
	n.msgs = append(n.msgs, m)
}

// sendAfterPersist queues m until the state it reports is durable
// ("persist before send", paper Figure 2: "respond to RPCs" only after
// updating stable storage).
func (n *Node) sendAfterPersist(m raftmsg.Message) {
	m.From = n.id
	n.msgsAfter = append(n.msgsAfter, m)
}
