package node

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edgekv/edgekv/batch"
	"github.com/edgekv/edgekv/consensus"
	"github.com/edgekv/edgekv/consensus/raftmsg"
	"github.com/edgekv/edgekv/ebpf/stage"
	"github.com/edgekv/edgekv/kv"
	"github.com/edgekv/edgekv/ops"
	"github.com/edgekv/edgekv/storage"
)

// Queue bounds between the stages. Each is a count of Readys (or inbound
// batches); the bytes behind them are bounded by the core's limits
// (MaxUncommittedBytes on the leader, MaxApplyBytes per Ready).
const (
	// inboxLen: inbound message batches waiting for the raft loop. A
	// transport delivers at most one batch per connection at a time and
	// peers are few; past it messages are dropped and Raft retransmits.
	inboxLen = 1024
	// persistQueueLen: Readys handed to the persister and not yet durable.
	// One fsync absorbs them all (group commit), so a handful covers a
	// slow disk; beyond it the raft loop waits, which is the backpressure
	// that stops a leader from racing ahead of its own disk.
	persistQueueLen = 64
	// applyQueueLen: committed-entry slices waiting for the applier; each
	// is at most MaxApplyBytes (16 MiB), so this bounds memory at 1 GiB in
	// the worst case and a few KiB in practice.
	applyQueueLen = 64
	// maxInboxDrain: inbound batches stepped before the next Ready, so
	// that a burst of messages costs one Ready, yet ticks still run.
	maxInboxDrain = 64
	// maxReadyRounds bounds the Ready loop per event (the core empties
	// itself in one or two rounds; the bound only guards against a bug).
	maxReadyRounds = 16
	// maxInflightRecords bounds the leader's batch records; the batcher's
	// window (MaxInflightBatches) keeps it far smaller.
	maxInflightRecords = 1024
	// maxInflightBatches is the batcher's window when Config.Batch leaves
	// it zero. The batcher hands out a batch at most every max-batch-delay
	// (2ms) under load, but only while fewer than the window are in
	// flight: with a window of W and a commit latency of L, batches can
	// leave only every L/W, so a request waits up to L/W in the queue
	// before it even starts. batch's default (4) cost a quarter of the
	// commit latency at 50-200 ms between nodes. 64 batches of at most
	// --max-batch-bytes (1 MiB) is the core's MaxUncommittedBytes (64 MiB),
	// which then bounds the work in flight, and the window stops costing
	// anything up to a commit latency of 64 x 2 ms = 128 ms.
	maxInflightBatches = 64
	// readRequestsLen: linearizable reads waiting to enter the raft loop.
	readRequestsLen = 4096
)

// Config configures a Node.
type Config struct {
	// ID is this member's id; Name its name (what X-Edgekv-Leader shows).
	ID   raftmsg.NodeID
	Name string
	// Members maps every voter's id to its name, this member included
	// (bootstrap); Table, when not nil, replaces it with the full member
	// table (addresses, learners: members.go), this member included.
	Members map[raftmsg.NodeID]string
	Table   []MemberRecord
	// TableApplied is the log index the Table reflects.
	TableApplied uint64
	// ClientAddr and PeerAddr are this member's advertised addresses; the
	// member announces them when the table lacks them (members.go).
	ClientAddr, PeerAddr string
	// OnMembers, when not nil, is called by the applier after the member
	// table changed (the server persists it); an error stops the member.
	OnMembers func(members []MemberRecord, applied uint64) error
	// OnRemoved, when not nil, is called once this member learns it was
	// removed from the cluster (before Removed is closed).
	OnRemoved func()
	// TickInterval is the Raft tick (--heartbeat-interval); the leader
	// heartbeats every tick. ElectionTicks is --election-timeout in ticks.
	TickInterval  time.Duration
	ElectionTicks int
	// Ticks, when not nil, replaces the TickInterval ticker as the source
	// of Raft ticks (tests freeze a member's ticks to play a paused
	// process); TickInterval still sizes the lease and the election timeout.
	Ticks <-chan time.Time
	// RequestTimeout bounds a client's wait (--request-timeout).
	RequestTimeout time.Duration
	// BootEpoch must differ from the previous boot's (a persisted counter;
	// only its low bootEpochBits count): it keeps request ids of earlier
	// boots from matching this one's.
	BootEpoch uint16
	// RandSeed seeds the election timer randomization.
	RandSeed uint64
	// KV configures the state machine (same on every member).
	KV kv.Config
	// Batch configures the batcher; its Clock is ignored (monotonic).
	Batch batch.Config
	// MaxInflightBytes is the per-follower replication window
	// (--max-inflight-bytes); zero takes the core's default.
	MaxInflightBytes uint64

	// SnapshotEntries: a snapshot is taken once this many entries were
	// applied since the last one (--snapshot-entries); zero never takes
	// one (the log is kept whole).
	SnapshotEntries uint64
	// MembershipBlob returns the membership blob a snapshot records
	// (snapblob.go); nil records none.
	MembershipBlob func() ([]byte, error)
	// Metrics, when not nil, receives the runtime's metrics (and the
	// batcher's, on its Set).
	Metrics *ops.Metrics
	// Store is the durable log; Recovered what it held at start. A Store
	// that is also a SnapshotStore enables snapshots (snapshot.go).
	Store     LogStore
	Recovered Recovered
	Logger    *slog.Logger
}

// Request ids differ across the members of a bootstrapped cluster by
// construction, so that an entry is never taken for another member's
// request even when a transport does not carry Entry.Origin: the
// registry's 16-bit epoch field holds the member's position among the
// sorted members it started with (memberIndexBits, at most
// consensus.MaxVoters = 64 members) above the boot counter (bootEpochBits:
// 1024 boots before an id of an old boot could recur). Members that joined
// later may share a position with another member; what keeps their
// waiters apart is Entry.Origin, which the wire codec and the WAL carry.
const (
	memberIndexBits = 6
	bootEpochBits   = 16 - memberIndexBits
)

func idEpoch(voters []raftmsg.NodeID, self raftmsg.NodeID, boot uint16) uint16 {
	i := slices.Index(voters, self)
	if i < 0 || i >= 1<<memberIndexBits {
		panic(fmt.Sprintf("node: member %d at index %d of %d voters", self, i, len(voters))) // New checked both
	}
	return uint16(i)<<bootEpochBits | boot&(1<<bootEpochBits-1)
}

// outcome is what a waiting client receives.
type outcome struct {
	res    kv.Result
	reject raftmsg.RejectReason // RejectNone: res holds the applied result
	closed bool                 // the node stopped before proposing it
}

type inbound struct {
	msgs    []raftmsg.Message
	release func()
}

type persistJob struct {
	seq   uint64
	hs    raftmsg.HardState
	ents  []raftmsg.Entry
	after []raftmsg.Message
	// install, when not nil, is a snapshot to install before hs and ents.
	install *snapInstall
}

type batchRecord struct {
	id        uint64
	lastIndex uint64
}

type readAnswer struct {
	index  uint64
	reject raftmsg.RejectReason
}

type readRequest struct {
	id         uint64
	answer     chan readAnswer // capacity 1: answering never blocks
	expiresAtN int64           // clock nanos after which nobody waits
	lease      bool            // may be served under the leader lease
}

// Node drives one member. Create it with New, start it with Start, stop
// it with Close.
type Node struct {
	cfg     Config
	log     *slog.Logger
	clock   *batch.MonotonicClock
	mem     membership // membership.go
	machine *kv.Machine
	batcher *batch.Batcher
	reg     *batch.Registry[outcome]
	store   LogStore
	tr      Transport

	inbox    chan inbound
	persistQ chan persistJob
	applyQ   chan applyJob
	readReqs chan readRequest
	// statusReqs asks the raft loop for consensus.Status (capacity 1 each).
	statusReqs chan chan consensus.Status
	metrics    *ops.Metrics // nil: no metrics

	persistedSeq  atomic.Uint64
	persistedNote chan struct{} // capacity 1, coalescing
	appliedIndex  atomic.Uint64
	appliedNote   chan struct{}                 // capacity 1, coalescing
	applyWait     atomic.Pointer[chan struct{}] // closed after each apply, then replaced

	// Published by the raft loop for readers on any goroutine.
	leaderID atomic.Uint64
	isLeader atomic.Bool
	term     atomic.Uint64
	commit   atomic.Uint64

	// diskErr is set while the log cannot be written (full disk): new
	// writes get 507 until a save succeeds again.
	diskErr  atomic.Pointer[error]
	readSeq  atomic.Uint64
	dropped  atomic.Uint64 // inbound batches dropped (inbox full)
	backups  atomic.Int32  // GET /v1/snapshot streams in progress
	stopping atomic.Bool

	stop      chan struct{}
	stopOnce  sync.Once
	closeOnce sync.Once
	wg        sync.WaitGroup
	errMu     sync.Mutex
	err       error // first fatal error; guarded by errMu

	// Raft loop only.
	raft         *consensus.Node
	propEnts     []raftmsg.Entry
	inflight     []batchRecord
	pendingReads map[uint64]readRequest
	ackedApplied uint64
	ackedSeq     uint64
	soft         consensus.SoftState
	// roundSent and lease decide lease reads (lease.go).
	roundSent roundTimes
	lease     time.Duration

	// Any goroutine: reads answered under the lease (tests, metrics).
	leaseReadsServed atomic.Uint64

	// stages marks the write path for tracers (stages.go); each of its
	// fields belongs to one of the goroutines.
	stages stageMarks

	// Persister only.
	group  []persistJob
	merged []raftmsg.Entry
	// savedHS is the newest hard state the persister made durable (its
	// Commit may lag: see mustSync).
	savedHS raftmsg.HardState

	// Applier only.
	results []kv.Result

	// snap is the snapshot machinery (snapshot_runtime.go).
	snap snapState
}

// New builds a member from its recovered state. It starts nothing.
func New(cfg Config) (*Node, error) {
	switch {
	case cfg.ID == raftmsg.None:
		return nil, errors.New("node: ID is zero")
	case cfg.Table == nil && (cfg.Name == "" || cfg.Members[cfg.ID] != cfg.Name):
		return nil, fmt.Errorf("node: Members must list this member %d as %q", cfg.ID, cfg.Name)
	case cfg.TickInterval <= 0 || cfg.RequestTimeout <= 0:
		return nil, fmt.Errorf("node: TickInterval %v and RequestTimeout %v must be positive", cfg.TickInterval, cfg.RequestTimeout)
	case cfg.Store == nil:
		return nil, errors.New("node: no Store")
	case len(cfg.Members) > consensus.MaxVoters:
		return nil, fmt.Errorf("node: %d members, at most %d", len(cfg.Members), consensus.MaxVoters)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	table, err := memberTableOf(cfg)
	if err != nil {
		return nil, err
	}
	// The voters of the table are the base configuration: the core
	// replays every conf-change entry of the log on top (consensus doc,
	// Membership: members no entry names have the same status in the
	// current table as at the log's start).
	voters := table.voters()
	// Members (voters, learners, this one) in id order: a member's
	// position is in its request ids (idEpoch).
	allIDs := make([]raftmsg.NodeID, 0, len(table.members))
	for _, r := range table.members {
		allIDs = append(allIDs, r.ID)
	}
	if _, self := table.byID(cfg.ID); !self {
		return nil, fmt.Errorf("node: the member table does not list this member %d", cfg.ID)
	}
	rn, err := consensus.New(consensus.Config{
		ID: cfg.ID, Voters: voters,
		HardState: cfg.Recovered.HardState, Entries: cfg.Recovered.Entries,
		Snapshot: cfg.Recovered.Snapshot, Applied: cfg.Recovered.Snapshot.Index,
		ElectionTicks: cfg.ElectionTicks, HeartbeatTicks: 1, RandSeed: cfg.RandSeed,
		MaxInflightBytes: cfg.MaxInflightBytes,
	})
	if err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	machine, err := kv.NewMachine(cfg.KV)
	if err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	if err := restoreRecovered(machine, cfg.Recovered); err != nil {
		return nil, err
	}
	clock := batch.NewMonotonicClock()
	bcfg := cfg.Batch
	bcfg.Clock = clock
	if bcfg.MaxInflightBatches == 0 {
		bcfg.MaxInflightBatches = maxInflightBatches
	}
	if cfg.Metrics != nil {
		bcfg.Metrics, bcfg.Observer = cfg.Metrics.Set(), cfg.Metrics
	}
	if bcfg.InflightTimeout == 0 {
		bcfg.InflightTimeout = cfg.RequestTimeout
	}
	batcher, err := batch.New(bcfg)
	if err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	// Twice the queue: waiters of queued proposals plus those in flight.
	reg, err := batch.NewRegistry[outcome](2*batcher.Config().MaxPending, idEpoch(allIDs, cfg.ID, cfg.BootEpoch))
	if err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	if cfg.Metrics != nil {
		reg.RegisterMetrics(cfg.Metrics.Set(), "edgekv_batch_waiters")
	}
	n := &Node{
		metrics: cfg.Metrics,
		cfg:     cfg, log: cfg.Logger.With("member", cfg.Name), clock: clock,
		machine: machine, batcher: batcher, reg: reg, store: cfg.Store,
		inbox:         make(chan inbound, inboxLen),
		persistQ:      make(chan persistJob, persistQueueLen),
		savedHS:       cfg.Recovered.HardState,
		applyQ:        make(chan applyJob, applyQueueLen),
		readReqs:      make(chan readRequest, readRequestsLen),
		statusReqs:    make(chan chan consensus.Status, 16),
		persistedNote: make(chan struct{}, 1),
		appliedNote:   make(chan struct{}, 1),
		stop:          make(chan struct{}),
		raft:          rn,
		pendingReads:  make(map[uint64]readRequest),
		lease:         leaseDuration(cfg.TickInterval, cfg.ElectionTicks),
	}
	n.snap.init(cfg)
	ch := make(chan struct{})
	n.applyWait.Store(&ch)
	n.soft = rn.SoftState()
	// Read ids, like request ids, must not repeat across boots: a late
	// answer to a read of the previous boot must not serve a new one.
	n.readSeq.Store(uint64(idEpoch(allIDs, cfg.ID, cfg.BootEpoch)) << 46)
	n.mem.init(table, cfg.Recovered.Entries)
	n.mem.reqSeq.Store(uint64(cfg.BootEpoch) << 48)
	n.mem.metrics = newMembershipMetrics(cfg.Metrics, n.mem.table.Load)
	if n.cfg.MembershipBlob == nil {
		n.cfg.MembershipBlob = n.tableBlob // snapshots record the member table
	}
	return n, nil
}

// Start runs the member's goroutines, sending through tr.
func (n *Node) Start(tr Transport) {
	n.tr = tr
	n.syncPeers(n.raft.ConfState()) // before the raft loop owns the core
	n.wg.Add(4)
	go n.runRaft()
	go n.runPersist()
	go n.runApply()
	go n.runSnapshotter()
}

// Close stops every goroutine of the member and waits for them. Writes
// still queued are answered 503; writes already proposed get 504 when
// their wait ends. It returns the fatal error that stopped the member, if
// any.
func (n *Node) Close() error {
	n.closeOnce.Do(func() {
		n.stopping.Store(true)
		n.batcher.Close()
		n.signalStop()
		n.wg.Wait()
		n.snap.close()
		// The raft loop has exited: this goroutine owns the batcher now.
		for p, ok := n.batcher.PopPending(); ok; p, ok = n.batcher.PopPending() {
			n.reg.Complete(p.RequestID, outcome{closed: true})
		}
		for {
			select {
			case in := <-n.inbox:
				if in.release != nil {
					in.release()
				}
				continue
			default:
			}
			break
		}
	})
	return n.Err()
}

// Done is closed when the member stops (Close or a fatal error).
func (n *Node) Done() <-chan struct{} { return n.stop }

// Err returns the fatal error that stopped the member, if any.
func (n *Node) Err() error {
	n.errMu.Lock()
	defer n.errMu.Unlock()
	return n.err
}

func (n *Node) signalStop() { n.stopOnce.Do(func() { close(n.stop) }) }

// fail stops the member after an error it cannot continue from (a failed
// fsync: acknowledging anything afterwards could lose data).
func (n *Node) fail(err error) {
	n.errMu.Lock()
	if n.err == nil {
		n.err = err
	}
	n.errMu.Unlock()
	n.log.Error("node: stopping after a fatal error", "err", err)
	n.signalStop()
}

// Receive implements Receiver: it queues inbound messages for the raft
// loop without blocking, dropping them when the inbox is full.
func (n *Node) Receive(msgs []raftmsg.Message, release func()) {
	if !n.stopping.Load() {
		select {
		case n.inbox <- inbound{msgs: msgs, release: release}:
			return
		default:
			n.dropped.Add(1)
		}
	}
	if release != nil {
		release()
	}
}

// ID returns this member's id.
func (n *Node) ID() raftmsg.NodeID { return n.cfg.ID }

// IsLeader reports whether this member led at its last Ready.
func (n *Node) IsLeader() bool { return n.isLeader.Load() }

// Leader returns the leader this member knows (None if none).
func (n *Node) Leader() raftmsg.NodeID { return raftmsg.NodeID(n.leaderID.Load()) }

// BatchStats snapshots the member's batcher (benchmarks, tests): batch
// counts and sizes, refusals by reason, pending proposals.
func (n *Node) BatchStats() batch.Stats { return n.batcher.Stats() }

// View returns the latest applied state.
func (n *Node) View() *kv.View { return n.machine.View() }

// ---- raft loop

func (n *Node) runRaft() {
	defer n.wg.Done()
	ticks := n.cfg.Ticks
	if ticks == nil {
		ticker := time.NewTicker(n.cfg.TickInterval)
		defer ticker.Stop()
		ticks = ticker.C
	}
	park := time.NewTimer(time.Hour)
	park.Stop()
	if cs := n.raft.ConfState(); len(cs.Voters) == 1 && cs.Voters[0] == n.cfg.ID {
		// A single voter needs nobody's vote: let its election timer run
		// out at once rather than keep clients waiting 1-2 timeouts.
		for i := 0; i < 2*n.cfg.ElectionTicks && n.raft.SoftState().Role != consensus.RoleLeader; i++ {
			n.raft.Tick()
		}
	}
	for {
		n.proposeBatches()
		if !n.handleReadys() {
			return
		}
		wait, parked := n.batcher.Park(n.clock.Now())
		if !parked && !n.stopping.Load() {
			continue // something changed: propose again
		}
		// A closed batcher never parks: then wait for the stop alone.
		var timerC <-chan time.Time
		var wakeC <-chan struct{}
		if parked {
			wakeC = n.batcher.Wakeup()
			if wait != batch.NoDeadline {
				park.Reset(wait)
				timerC = park.C
			}
		}
		stopped := false
		select {
		case <-n.stop:
			stopped = true
		case <-ticks:
			n.raft.Tick()
			n.expireReads()
			n.tickMembership()
		case call := <-n.mem.calls:
			call()
		case in := <-n.inbox:
			n.step(in)
			for i := 0; i < maxInboxDrain; i++ {
				select {
				case in := <-n.inbox:
					n.step(in)
					continue
				default:
				}
				break
			}
		case <-n.persistedNote:
			if seq := n.persistedSeq.Load(); seq > n.ackedSeq {
				if err := n.raft.AckPersisted(seq); err != nil {
					panic(fmt.Sprintf("node: %v", err)) // our bug: the persister reports Seqs we issued
				}
				n.ackedSeq = seq
				n.markCommitted()
			}
		case <-n.appliedNote:
			n.ackApplied()
			n.maybeSnapshot()
		case f := <-n.snap.calls:
			f()
		case r := <-n.readReqs:
			n.startRead(r)
		case reply := <-n.statusReqs:
			reply <- n.raft.Status()
		case <-wakeC:
		case <-timerC:
		}
		if parked {
			n.batcher.Unpark()
		}
		if timerC != nil {
			park.Stop()
		}
		if stopped {
			n.abortReads()
			return
		}
	}
}

// step feeds one inbound batch to the core.
func (n *Node) step(in inbound) {
	for i := range in.msgs {
		m := &in.msgs[i]
		if m.Type == raftmsg.MsgSnap {
			// A snapshot reaches the core only with its file
			// (ReceiveSnapshot); a bare one is a peer's bug.
			n.log.Debug("node: MsgSnap without its file dropped", "from", uint64(m.From))
			continue
		}
		if m.Type == raftmsg.MsgProp && n.soft.Role == consensus.RoleLeader {
			// The leader's clock is the idempotency clock (kv package doc);
			// the codec may not carry Origin, and a member only forwards
			// its own proposals, so the sender is the origin.
			ts := time.Now().UnixNano()
			for j := range m.Entries {
				e := &m.Entries[j]
				_ = kv.StampTimestamp(e.Data, ts) // undecodable data is the state machine's to refuse
				if e.Origin == raftmsg.None {
					e.Origin = m.From
				}
			}
		}
		if err := n.raft.Step(*m); err != nil {
			n.log.Debug("node: message refused", "type", m.Type, "from", uint64(m.From), "err", err)
		}
	}
	if in.release != nil {
		in.release()
	}
}

func (n *Node) proposeBatches() {
	now := n.clock.Now()
	for bt, ok := n.batcher.Next(now); ok; bt, ok = n.batcher.Next(now) {
		n.markEmitted(bt.ID)
		ts := time.Now().UnixNano()
		ents := n.propEnts[:0]
		for _, p := range bt.Proposals {
			_ = kv.StampTimestamp(p.Data, ts) // the backend encoded it: always a command
			ents = append(ents, raftmsg.Entry{Type: raftmsg.EntryNormal, RequestID: p.RequestID, Origin: n.cfg.ID, Data: p.Data})
		}
		err := n.raft.Propose(ents)
		clear(ents) // the core keeps Data, not the slice
		n.propEnts = ents[:0]
		if err != nil {
			reason := consensus.RejectReasonOf(err)
			if reason == raftmsg.RejectNone {
				panic(fmt.Sprintf("node: proposal refused: %v", err)) // our bug: we built it
			}
			for _, p := range bt.Proposals {
				n.reg.Complete(p.RequestID, outcome{reject: reason})
			}
			n.batcher.Finish(bt.ID, now, false)
			continue
		}
		if n.raft.SoftState().Role != consensus.RoleLeader {
			// Forwarded: its commit is seen only by the leader, so it does
			// not hold this member's batching window (the leader's
			// uncommitted-bytes bound limits forwarded load instead).
			n.batcher.Forwarded(bt.ID, now)
			continue
		}
		if len(n.inflight) >= maxInflightRecords {
			n.batcher.Finish(n.inflight[0].id, now, false)
			n.inflight = n.inflight[1:]
		}
		n.inflight = append(n.inflight, batchRecord{id: bt.ID, lastIndex: n.raft.LastIndex()})
		n.markProposed(bt.ID, n.raft.LastIndex())
	}
	n.maybeMarkForming()
}

// handleReadys carries out every Ready the core has; false when stopping.
func (n *Node) handleReadys() bool {
	if n.metrics != nil && n.raft.HasReady() {
		defer func() {
			n.metrics.SetRaftState(n.soft.Term, n.commit.Load(), n.appliedIndex.Load(), n.soft.Leader != raftmsg.None, n.soft.Role == consensus.RoleLeader)
		}()
	}
	for round := 0; round < maxReadyRounds && n.raft.HasReady(); round++ {
		rd := n.raft.Ready()
		n.publishSoft(rd.SoftState)
		n.mem.noteAppended(rd.Entries)
		if rd.ConfState != nil {
			n.syncPeers(*rd.ConfState)
		}
		if !rd.HardState.IsEmpty() {
			n.commit.Store(rd.HardState.Commit)
			n.markCommitted()
		}
		// A heartbeat round's lease counts from before its messages leave.
		if rd.HeartbeatRound != 0 {
			n.roundSent.note(rd.HeartbeatRound, n.clock.Now())
		}
		// Appends and heartbeats may leave before our own fsync (§10.2.1).
		for _, m := range rd.Messages {
			if m.Type == raftmsg.MsgSnap {
				n.sendSnapshot(m) // streamed beside the message
				continue
			}
			n.tr.Send(m)
		}
		for _, rp := range rd.RejectedProposals {
			n.reg.Complete(rp.RequestID, outcome{reject: rp.Reason})
		}
		for _, rs := range rd.ReadStates {
			n.answerRead(rs.RequestID, readAnswer{index: rs.Index})
		}
		for _, rr := range rd.RejectedReads {
			n.answerRead(rr.RequestID, readAnswer{reject: rr.Reason})
		}
		// Every Ready goes through the persister, even an empty one:
		// AckPersisted is cumulative and must follow Seq order.
		job := persistJob{seq: rd.Seq, hs: rd.HardState, ents: rd.Entries, after: rd.MessagesAfterPersist}
		if !rd.Snapshot.IsEmpty() {
			// Installed by the persister before this Ready's entries,
			// restored by the applier before anything after it.
			job.install = n.takeHeld(rd.Snapshot)
		}
		select {
		case n.persistQ <- job:
		case <-n.stop:
			return false
		}
		if len(rd.CommittedEntries) > 0 || job.install != nil {
			select {
			case n.applyQ <- applyJob{ents: rd.CommittedEntries, install: job.install}:
			case <-n.stop:
				return false
			}
		}
	}
	return true
}

func (n *Node) publishSoft(s consensus.SoftState) {
	if s == n.soft {
		return
	}
	if s.Term != n.soft.Term || s.Role != consensus.RoleLeader {
		// Our batches in flight may be lost with the leadership; their
		// clients wait for the entries or for their timeout (504).
		now := n.clock.Now()
		for _, r := range n.inflight {
			n.batcher.Finish(r.id, now, false)
		}
		n.inflight = n.inflight[:0]
		n.stages.ledger.invalidate()
	}
	if s.Leader != n.soft.Leader && n.metrics != nil {
		n.metrics.IncLeaderChanges()
	}
	if n.metrics != nil {
		// Counted from the roles the Readys show: a pre-vote round or an
		// election never ends within the Step that starts it (it waits for
		// answers, or, alone, for its term to be durable).
		if s.Role == consensus.RolePreCandidate && n.soft.Role != consensus.RolePreCandidate {
			n.metrics.IncPreVotes()
		}
		if s.Term > n.soft.Term && (s.Role == consensus.RoleCandidate || s.Role == consensus.RoleLeader) {
			n.metrics.IncElections()
		}
	}
	if s.Leader != n.soft.Leader || s.Role != n.soft.Role {
		n.log.Info("node: leadership", "role", s.Role.String(), "term", s.Term, "leader", n.memberName(s.Leader))
	}
	if s.Removed && !n.soft.Removed {
		n.markRemoved("the core saw its removal commit")
	}
	n.soft = s
	n.leaderID.Store(uint64(s.Leader))
	n.isLeader.Store(s.Role == consensus.RoleLeader)
	n.term.Store(s.Term)
}

func (n *Node) ackApplied() {
	idx := n.appliedIndex.Load()
	if idx <= n.ackedApplied {
		return
	}
	if err := n.raft.AckApplied(idx); err != nil {
		panic(fmt.Sprintf("node: %v", err)) // our bug: the applier reports what we handed out
	}
	n.ackedApplied = idx
	now := n.clock.Now()
	k := 0
	for k < len(n.inflight) && n.inflight[k].lastIndex <= idx {
		n.batcher.Finish(n.inflight[k].id, now, true)
		k++
	}
	n.inflight = append(n.inflight[:0], n.inflight[k:]...)
}

// ---- reads (raft loop side)

func (n *Node) startRead(r readRequest) {
	if r.lease {
		if index, ok := n.leaseReadIndex(); ok {
			n.leaseReadsServed.Add(1)
			r.answer <- readAnswer{index: index}
			return
		}
	}
	if len(n.pendingReads) >= n.batcher.Config().MaxPending {
		// Reads are bounded like writes (--max-pending): 503 at once.
		r.answer <- readAnswer{reject: raftmsg.RejectOverloaded}
		return
	}
	if err := n.raft.ReadIndex(r.id); err != nil {
		reason := consensus.RejectReasonOf(err)
		if reason == raftmsg.RejectNone {
			reason = raftmsg.RejectNoLeader
		}
		r.answer <- readAnswer{reject: reason}
		return
	}
	n.pendingReads[r.id] = r
}

// leaseReadIndex returns the index a lease read waits for, when this node
// leads under a lease that still holds on the monotonic clock; otherwise
// the read goes through ReadIndex.
func (n *Node) leaseReadIndex() (uint64, bool) {
	index, round, err := n.raft.LeaseRead()
	if err != nil {
		return 0, false
	}
	sentAt, ok := n.roundSent.lookup(round)
	if !ok || !leaseHolds(sentAt, n.clock.Now(), n.lease) {
		return 0, false
	}
	return index, true
}

func (n *Node) answerRead(id uint64, a readAnswer) {
	r, ok := n.pendingReads[id]
	if !ok {
		return // expired: its client gave up
	}
	delete(n.pendingReads, id)
	r.answer <- a
}

// expireReads forgets reads whose clients have given up (a lost read-index
// message is never answered), so the map stays bounded.
func (n *Node) expireReads() {
	now := n.clock.Now()
	for id, r := range n.pendingReads {
		if now > r.expiresAtN {
			delete(n.pendingReads, id)
		}
	}
}

func (n *Node) abortReads() {
	for id, r := range n.pendingReads {
		delete(n.pendingReads, id)
		r.answer <- readAnswer{reject: raftmsg.RejectNoLeader}
	}
}

// ---- persister

func (n *Node) runPersist() {
	defer n.wg.Done()
	for {
		var job persistJob
		select {
		case <-n.stop:
			return
		case job = <-n.persistQ:
		}
		group := append(n.group[:0], job)
	drain:
		// A Ready with a snapshot ends its group: the snapshot replaces
		// the log between the Readys before it and its own entries.
		for len(group) < persistQueueLen && group[len(group)-1].install == nil {
			select {
			case j := <-n.persistQ:
				group = append(group, j)
			default:
				break drain
			}
		}
		saveFrom := group
		if group[len(group)-1].install != nil {
			if !n.installHeld(group) {
				return
			}
			saveFrom = group[len(group)-1:]
		}
		hs, ents := n.mergeGroup(saveFrom)
		if len(ents) > 0 || n.mustSync(hs) {
			if !n.save(hs, ents, group[len(group)-1].seq) {
				return
			}
			if !hs.IsEmpty() {
				n.savedHS = hs
			}
			if len(ents) > 0 {
				n.markPersisted(ents[len(ents)-1].Index)
			}
		}
		// Durable: now the votes and append acknowledgements may leave
		// (paper Figure 2: respond only after updating stable storage).
		for _, j := range group {
			for _, m := range j.after {
				n.tr.Send(m)
			}
		}
		n.persistedSeq.Store(group[len(group)-1].seq)
		notify(n.persistedNote)
		clear(group)
		n.group = group[:0]
		clear(n.merged)
		n.merged = n.merged[:0]
	}
}

// mustSync reports whether hs needs a write of its own. The term and the
// vote must be durable before anything that depends on them leaves (paper
// Figure 2: "updated on stable storage before responding to RPCs"); the
// commit index is volatile state (Figure 2 again), so a hard state that
// moves only the commit index rides along with the next write of entries
// instead of costing an fsync per commit. After a crash the member comes
// back with an older commit index and learns the newer one from the leader
// (or, alone, by committing its term's no-op); nothing acknowledged
// depends on it.
func (n *Node) mustSync(hs raftmsg.HardState) bool {
	if hs.IsEmpty() {
		return false
	}
	return hs.Term != n.savedHS.Term || hs.Vote != n.savedHS.Vote
}

// Backoff of the persister's retries while the disk is full or failing
// with I/O errors that left nothing written.
const (
	saveRetryMin = 10 * time.Millisecond
	saveRetryMax = time.Second
)

// save makes hs and ents durable. A full disk or an I/O error that wrote
// nothing (storage.ErrNoSpace, storage.ErrIO) stops new writes with 507
// and is retried until it succeeds, so writes resume once space is freed;
// any other error stops the member. It returns false when stopping.
func (n *Node) save(hs raftmsg.HardState, ents []raftmsg.Entry, seq uint64) bool {
	backoff := saveRetryMin
	var timer *time.Timer
	for {
		start := time.Now()
		err := n.store.Save(hs, ents)
		if n.metrics != nil {
			n.metrics.ObserveFsync(int64(time.Since(start)))
		}
		if err == nil {
			if n.diskErr.Load() != nil {
				n.diskErr.Store(nil)
				n.log.Info("node: the log accepts writes again")
			}
			return true
		}
		if !errors.Is(err, storage.ErrNoSpace) && !errors.Is(err, storage.ErrIO) {
			n.fail(fmt.Errorf("node: persist up to ready %d: %w", seq, err))
			return false
		}
		if n.diskErr.Load() == nil {
			n.log.Error("node: cannot write the log; refusing writes with 507 until it can", "err", err)
		}
		n.diskErr.Store(&err)
		if timer == nil {
			timer = time.NewTimer(backoff)
			defer timer.Stop()
		} else {
			timer.Reset(backoff)
		}
		backoff = min(2*backoff, saveRetryMax)
		select {
		case <-n.stop:
			return false
		case <-timer.C:
		}
	}
}

// mergeGroup folds queued Readys into one write: the last hard state, and
// the entries as the log would hold them after applying each Ready's
// entries in order (a later Ready's first entry replaces its index and
// everything after it).
func (n *Node) mergeGroup(group []persistJob) (raftmsg.HardState, []raftmsg.Entry) {
	var hs raftmsg.HardState
	var single []raftmsg.Entry
	withEntries := 0
	for _, j := range group {
		if !j.hs.IsEmpty() {
			hs = j.hs
		}
		if len(j.ents) > 0 {
			withEntries++
			single = j.ents
		}
	}
	if withEntries <= 1 {
		return hs, single
	}
	merged := n.merged[:0]
	for _, j := range group {
		if len(j.ents) == 0 {
			continue
		}
		first := j.ents[0].Index
		if len(merged) > 0 {
			base := merged[0].Index
			switch {
			case first <= base:
				merged = merged[:0]
			case first-base < uint64(len(merged)):
				merged = merged[:first-base]
			case first-base > uint64(len(merged)):
				panic(fmt.Sprintf("node: ready entries start at %d after a gap (merged %d..%d)", first, base, base+uint64(len(merged))-1))
			}
		}
		merged = append(merged, j.ents...)
	}
	n.merged = merged
	return hs, merged
}

// ---- applier

func (n *Node) runApply() {
	defer n.wg.Done()
	for {
		var job applyJob
		select {
		case <-n.stop:
			return
		case job = <-n.applyQ:
		}
		if job.install != nil && !n.restoreInstalled(job.install) {
			return
		}
		ents := job.ents
		if len(ents) == 0 {
			continue
		}
		start := time.Now()
		results, err := n.machine.ApplyEntries(ents, n.results[:0])
		if n.metrics != nil {
			n.metrics.ObserveApply(int64(time.Since(start)))
			v := n.machine.View()
			n.metrics.SetStore(v.SizeBytes(), n.machine.Config().QuotaBytes, uint64(v.Len()))
		}
		if err != nil {
			n.fail(fmt.Errorf("node: apply: %w", err))
			return
		}
		lastIndex := ents[len(ents)-1].Index
		n.stages.ledger.markUpTo(&n.stages.applied, lastIndex, stage.Applied)
		j := 0
		membersChanged := false
		for i := range ents {
			e := &ents[i]
			if e.Type == raftmsg.EntryConfChange || e.Type == raftmsg.EntryNormal && isAnnounce(e.Data) {
				membersChanged = n.applyMembershipEntry(e) || membersChanged
			}
			if e.Type != raftmsg.EntryNormal {
				continue
			}
			r := results[j]
			j++
			// Origin None: the entry came through a transport that does not
			// carry Origin; the id alone is unique across members.
			if e.RequestID != 0 && (e.Origin == n.cfg.ID || e.Origin == raftmsg.None) {
				n.reg.Complete(e.RequestID, outcome{res: r})
			}
		}
		n.stages.ledger.markUpTo(&n.stages.answered, lastIndex, stage.Answered)
		clear(results)
		n.results = results[:0]
		if membersChanged {
			n.persistMembers()
		}
		n.appliedIndex.Store(ents[len(ents)-1].Index)
		n.answerAppliedChanges()
		notify(n.appliedNote)
		next := make(chan struct{})
		close(*n.applyWait.Swap(&next))
	}
}

// Status returns the core's status, asked of the raft loop; false when
// the loop does not answer within timeout (stopped or stalled).
func (n *Node) Status(timeout time.Duration) (consensus.Status, bool) {
	reply := make(chan consensus.Status, 1)
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case n.statusReqs <- reply:
	case <-timer.C:
		return consensus.Status{}, false
	case <-n.stop:
		return consensus.Status{}, false
	}
	select {
	case st := <-reply:
		return st, true
	case <-timer.C:
	case <-n.stop:
	}
	return consensus.Status{}, false
}

// notify wakes the receiver of a coalescing notification channel.
func notify(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// waitApplied waits until the published view has applied index, or the
// deadline passes, or the member stops.
func (n *Node) waitApplied(index uint64, deadline time.Time) bool {
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		ch := *n.applyWait.Load()
		if n.machine.View().AppliedIndex() >= index {
			return true
		}
		if timer == nil {
			timer = time.NewTimer(time.Until(deadline))
		}
		select {
		case <-ch:
		case <-timer.C:
			return false
		case <-n.stop:
			return false
		}
	}
}
