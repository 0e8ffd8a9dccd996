// Package sim is a deterministic simulator of a Raft cluster built from the
// pure consensus core: a seeded network that delays, drops, duplicates and
// reorders messages and partitions the nodes; crashes that lose everything
// not yet persisted, and restarts from what was; a runtime that pipelines
// Readys (takes the next before the previous is durable) and releases
// MessagesAfterPersist only once they are durable. After every step it
// checks the safety properties of Raft (paper §5.4, Figure 3), and after the
// chaos ends, liveness. Membership changes (add learner, promote, remove,
// the leader included) run under the same chaos with their own checks
// (membership.go, thesis §4).
//
// A run is a pure function of its seed: Run(Options{Seed: s}) replays a
// failure exactly. It must never read the clock, spawn goroutines or share
// state between runs.
package sim

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"math/rand/v2"
	"slices"

	"github.com/edgekv/edgekv/consensus"
	"github.com/edgekv/edgekv/consensus/quorum"
	"github.com/edgekv/edgekv/consensus/raftmsg"
)

// Options configures one run.
type Options struct {
	Seed uint64
	// Nodes is the cluster size; 0 lets the seed pick 3 or 5.
	Nodes int
	// ChaosTicks is how long faults are injected (default 300); then the
	// cluster heals, must commit a new proposal within LivenessTicks
	// (default 300: elections among nodes all restarted at once may split a
	// few times, and the new leader's no-op commits only after the old
	// uncommitted tail replicated through the small windows used here), and
	// every node must apply it within CatchUpTicks more (default 500: a node
	// that missed the whole chaos phase replays it).
	ChaosTicks    int
	LivenessTicks int
	CatchUpTicks  int
	// Trace, when set, receives one line per event.
	Trace io.Writer
}

// Stats are the coverage counts of a run.
type Stats struct {
	Steps, Ticks                                  int
	MsgsSent, MsgsDelivered, MsgsDropped, MsgsDup int
	Crashes, Restarts, Partitions, Heals          int
	Proposals, ProposalsRefused, EntriesApplied   int
	Leaders, MaxPipelined, Truncations            int
	Reads, ReadsServed, ReadsRefused              int
	Pauses, Transfers, TimeoutNows                int
	LeaseReads, LeaseServed, LinkCuts             int
	// Membership (membership.go).
	ConfProposed, ConfRefused, ConfApplied, LeaderRemovals, RemovedSeen int
	// ConfRefusedBy counts refusals by reason, in confRefusals order.
	ConfRefusedBy [len(confRefusalNames)]int
	// Snapshots (snapshot.go): taken by compaction, sent by leaders,
	// installed by followers, refused by them (stale or already held),
	// streams that failed, restarts from a snapshot.
	SnapsTaken, SnapsSent, SnapsInstalled, SnapsRefused, SnapsFailed, SnapRestarts int
}

// Add accumulates o into s (MaxPipelined takes the maximum).
func (s *Stats) Add(o Stats) {
	s.Steps += o.Steps
	s.Ticks += o.Ticks
	s.MsgsSent += o.MsgsSent
	s.MsgsDelivered += o.MsgsDelivered
	s.MsgsDropped += o.MsgsDropped
	s.MsgsDup += o.MsgsDup
	s.Crashes += o.Crashes
	s.Restarts += o.Restarts
	s.Partitions += o.Partitions
	s.Heals += o.Heals
	s.Proposals += o.Proposals
	s.ProposalsRefused += o.ProposalsRefused
	s.EntriesApplied += o.EntriesApplied
	s.Leaders += o.Leaders
	s.MaxPipelined = max(s.MaxPipelined, o.MaxPipelined)
	s.Truncations += o.Truncations
	s.Reads += o.Reads
	s.ReadsServed += o.ReadsServed
	s.ReadsRefused += o.ReadsRefused
	s.Pauses += o.Pauses
	s.Transfers += o.Transfers
	s.TimeoutNows += o.TimeoutNows
	s.LeaseReads += o.LeaseReads
	s.LeaseServed += o.LeaseServed
	s.LinkCuts += o.LinkCuts
	s.ConfProposed += o.ConfProposed
	s.ConfRefused += o.ConfRefused
	s.ConfApplied += o.ConfApplied
	s.LeaderRemovals += o.LeaderRemovals
	s.RemovedSeen += o.RemovedSeen
	for i := range s.ConfRefusedBy {
		s.ConfRefusedBy[i] += o.ConfRefusedBy[i]
	}
	s.SnapsTaken += o.SnapsTaken
	s.SnapsSent += o.SnapsSent
	s.SnapsInstalled += o.SnapsInstalled
	s.SnapsRefused += o.SnapsRefused
	s.SnapsFailed += o.SnapsFailed
	s.SnapRestarts += o.SnapRestarts
}

func (s Stats) String() string {
	return fmt.Sprintf("steps=%d ticks=%d msgs sent=%d delivered=%d dropped=%d duplicated=%d crashes=%d restarts=%d partitions=%d link-cuts=%d heals=%d proposals=%d refused=%d applied=%d leaders=%d truncations=%d max-pipelined-readys=%d reads=%d served=%d refused=%d pauses=%d transfers=%d timeout-nows=%d lease-reads=%d served=%d conf-changes proposed=%d refused=%d %v applied=%d leader-removals=%d removed-seen=%d snapshots taken=%d sent=%d installed=%d refused=%d failed=%d restarts-from-snapshot=%d",
		s.Steps, s.Ticks, s.MsgsSent, s.MsgsDelivered, s.MsgsDropped, s.MsgsDup, s.Crashes, s.Restarts, s.Partitions, s.LinkCuts, s.Heals,
		s.Proposals, s.ProposalsRefused, s.EntriesApplied, s.Leaders, s.Truncations, s.MaxPipelined, s.Reads, s.ReadsServed, s.ReadsRefused, s.Pauses, s.Transfers, s.TimeoutNows, s.LeaseReads, s.LeaseServed,
		s.ConfProposed, s.ConfRefused, s.refusalsString(), s.ConfApplied, s.LeaderRemovals, s.RemovedSeen,
		s.SnapsTaken, s.SnapsSent, s.SnapsInstalled, s.SnapsRefused, s.SnapsFailed, s.SnapRestarts)
}

// Cluster parameters: small windows so that byte bounds, oversized entries
// and backtracking are exercised constantly.
const (
	electionTicks  = 10
	heartbeatTicks = 2
	maxDelayTicks  = 3
	maxPipelined   = 4    // Readys taken and not yet durable, per node
	bigEntryBytes  = 1500 // larger than the window: must go alone
)

type inFlight struct {
	m         raftmsg.Message
	deliverAt int
	snap      snapFlight // MsgSnap only
}

type pendingReady struct {
	snap  heldSnap // Ready.Snapshot, with its state
	seq   uint64
	hs    raftmsg.HardState
	ents  []raftmsg.Entry
	after []raftmsg.Message
	// commit: the node's commit index when it handed out this Ready.
	commit uint64
}

// logView is a log as some party holds it, with the hash of every prefix so
// that log matching is checked in O(new entries).
type logView struct {
	terms  []uint64 // terms[i] is the term at index i+1
	prefix []uint64 // prefix[i] hashes entries 1..i+1
	// base and confs: the configuration the log starts from and its
	// conf-change entries (membership.go).
	base  raftmsg.ConfState
	confs []viewConf
}

func (v *logView) len() uint64 { return uint64(len(v.terms)) }

type simNode struct {
	id     raftmsg.NodeID
	node   *consensus.Node // nil while crashed
	durHS  raftmsg.HardState
	durLog []raftmsg.Entry // after durSnap.Index
	snapNode
	dur         logView // the durable log
	view        logView // the log as handed out in Readys (durable or not)
	pending     []pendingReady
	lastApplied uint64
	leaderTerm  uint64 // last term in which this node was seen leading and checked
	part        int
	// pausedUntil: a stopped process (GC pause, SIGSTOP, starved VM): no
	// ticks, no messages handled, no I/O until this tick, while the others
	// go on. Its messages wait in the network.
	pausedUntil int
	// roundSent: global tick at which each heartbeat round left (the
	// runtime's monotonic clock, which keeps running through pauses).
	roundSent map[uint64]int
	// base: the configuration the node was first started with (bootstrap
	// voters, or what a joiner was told); retired: removed and shut down
	// for good (or a joiner whose join was refused).
	base         raftmsg.ConfState
	retired      bool
	reportedConf raftmsg.ConfState // the last Ready.ConfState (or the start's)
}

func (sn *simNode) paused(now int) bool { return now < sn.pausedUntil }

type sim struct {
	opts     Options
	rng      *rand.Rand
	nodes    []*simNode
	net      []inFlight
	now      int
	stats    Stats
	seedHash maphash.Seed
	nextReq  uint64
	// Per-seed knobs, so that seeds differ in kind, not just in order.
	maxMsgBytes      uint64
	maxInflightBytes uint64
	maxInflightMsgs  int
	crashPerMille    int
	leaderCrashRate  int
	proposePercent   int // chance of a proposal per tick: some seeds are read-mostly
	readPercent      int
	compactPercent   int // chance per node and tick of a snapshot

	leaders    map[uint64]raftmsg.NodeID // term -> leader (one per term)
	prefixAt   map[[2]uint64]uint64      // (index, term) -> prefix hash, over every log ever seen
	global     []uint64                  // prefix hash of the applied sequence, by index-1
	globalTerm []uint64
	// commitTerm: the term of the leader that committed each entry.
	// Leader Completeness is about leaders of later terms only: a stale
	// leader of an earlier term (say, paused) may lack it.
	commitTerm []uint64
	// liveness
	linkLast map[[2]raftmsg.NodeID]int // last delivery tick per link, for FIFO
	// readStart: for each read in flight, how many entries were committed
	// when it began. Linearizability (thesis §6.4): its read index must be
	// at least that.
	readStart    map[uint64]uint64
	cuts         map[[2]raftmsg.NodeID]bool // links cut both ways, by (low, high) id
	healed       bool
	livenessReqs map[uint64]bool
	liveIndex    uint64 // index of the first liveness proposal committed
	liveDone     bool
	// Membership: the bootstrap voters, the configuration at the global
	// commit index, how many ids were added.
	bootstrap     []raftmsg.NodeID
	committedConf raftmsg.ConfState
	// confHistory: every committed conf-change entry, in order: the
	// configuration at any committed index (snapshot.go).
	confHistory   []viewConf
	added         int
	maxLeaderTerm uint64
	// freshLeader: a leader just elected; a change proposed at once races
	// with its no-op and with any change an earlier leader left behind.
	freshLeader *simNode
}

// ErrViolation wraps every property violation.
var ErrViolation = errors.New("sim: property violated")

// Run simulates one seed and returns its coverage counts, or an error
// wrapping ErrViolation naming the broken property.
func Run(opts Options) (Stats, error) {
	if opts.ChaosTicks == 0 {
		opts.ChaosTicks = 300
	}
	if opts.LivenessTicks == 0 {
		opts.LivenessTicks = 300
	}
	if opts.CatchUpTicks == 0 {
		opts.CatchUpTicks = 500
	}
	s := &sim{opts: opts, rng: rand.New(rand.NewPCG(opts.Seed, 0x5eed)),
		leaders: map[uint64]raftmsg.NodeID{}, prefixAt: map[[2]uint64]uint64{}, livenessReqs: map[uint64]bool{}, linkLast: map[[2]raftmsg.NodeID]int{}, readStart: map[uint64]uint64{}, cuts: map[[2]raftmsg.NodeID]bool{}}
	s.seedHash = maphash.MakeSeed()
	profile := []struct {
		msgBytes, inflightBytes uint64
		inflightMsgs            int
	}{
		{64, 4096, 32}, // one entry per message: old-term entries travel apart from the no-op
		{200, 1024, 4}, // a few entries per message, tiny window
		{1024, 1024, 4},
		{4096, 8192, 8},
	}[s.rng.IntN(4)]
	s.maxMsgBytes, s.maxInflightBytes, s.maxInflightMsgs = profile.msgBytes, profile.inflightBytes, profile.inflightMsgs
	s.crashPerMille = 4 + s.rng.IntN(16)
	s.leaderCrashRate = s.rng.IntN(12)
	s.proposePercent = []int{40, 10, 2}[s.rng.IntN(3)]
	s.readPercent = []int{30, 80}[s.rng.IntN(2)]
	s.compactPercent = []int{0, 1, 5, 20}[s.rng.IntN(4)]
	n := opts.Nodes
	if n == 0 {
		n = 3 + 2*s.rng.IntN(2)
	}
	for i := 1; i <= n; i++ {
		s.bootstrap = append(s.bootstrap, raftmsg.NodeID(i))
	}
	s.committedConf = raftmsg.ConfState{Voters: s.bootstrap}
	for i := 1; i <= n; i++ {
		sn := &simNode{id: raftmsg.NodeID(i), base: s.committedConf}
		sn.dur.base, sn.view.base = sn.base, sn.base
		s.nodes = append(s.nodes, sn)
	}
	for _, sn := range s.nodes {
		if err := s.start(sn); err != nil {
			return s.stats, err
		}
	}
	err := s.run()
	if err != nil {
		err = fmt.Errorf("seed %d, tick %d, step %d: %w", opts.Seed, s.now, s.stats.Steps, err)
	}
	return s.stats, err
}

func (s *sim) tracef(format string, args ...any) {
	if s.opts.Trace != nil {
		fmt.Fprintf(s.opts.Trace, "t=%d step=%d ", s.now, s.stats.Steps)
		fmt.Fprintf(s.opts.Trace, format+"\n", args...)
	}
}

func (s *sim) start(sn *simNode) error {
	cfg := consensus.Config{
		ID: sn.id, Voters: sn.base.Voters, HardState: sn.durHS, Entries: slices.Clone(sn.durLog),
		Snapshot: sn.durSnap, Applied: sn.durSnap.Index,
		ElectionTicks: electionTicks, HeartbeatTicks: heartbeatTicks, RandSeed: s.rng.Uint64(),
		MaxInflightMsgs: s.maxInflightMsgs, MaxInflightBytes: s.maxInflightBytes, MaxMsgBytes: s.maxMsgBytes,
		MaxUncommittedBytes: 8 << 10, MaxApplyBytes: 2048, MaxLearnerLagEntries: maxLearnerLag,
	}
	node, err := consensus.New(cfg)
	if err != nil {
		return fmt.Errorf("%w: restart of %d: %v", ErrViolation, sn.id, err)
	}
	sn.node = node
	sn.pending = nil
	sn.roundSent = map[uint64]int{}
	// The state machine is volatile: restored from the durable snapshot,
	// then re-applied from there.
	sn.lastApplied, sn.appliedState = sn.durSnap.Index, sn.durSnapState
	sn.incarnation++
	sn.historyUnknown = sn.durSnap.IsEmpty() && !slices.Contains(sn.base.Voters, sn.id)
	if !sn.durSnap.IsEmpty() {
		s.stats.SnapRestarts++
	}
	sn.held, sn.reports = nil, nil
	sn.leaderTerm = 0
	// What the runtime knows after a restart is exactly the durable log.
	sn.view.terms = append(sn.view.terms[:0], sn.dur.terms...)
	sn.view.prefix = append(sn.view.prefix[:0], sn.dur.prefix...)
	sn.view.confs = append(sn.view.confs[:0], sn.dur.confs...)
	sn.view.base = sn.dur.base
	sn.reportedConf = node.ConfState()
	if cs := sn.view.confOf(); voterDiff(cs, sn.reportedConf) != 0 || !slices.Equal(cs.Learners, sn.reportedConf.Learners) {
		return fmt.Errorf("%w: node %d restarts with configuration %v, its durable log gives %v", ErrViolation, sn.id, sn.reportedConf, cs)
	}
	return nil
}

func (s *sim) run() error {
	total := s.opts.ChaosTicks + s.opts.LivenessTicks + s.opts.CatchUpTicks
	for s.now = 0; s.now < total; s.now++ {
		if s.now == s.opts.ChaosTicks+s.opts.LivenessTicks && s.liveIndex == 0 {
			return fmt.Errorf("%w: liveness: no proposal committed within %d ticks of healing", ErrViolation, s.opts.LivenessTicks)
		}
		if s.now == s.opts.ChaosTicks {
			if err := s.heal(); err != nil {
				return err
			}
		}
		if !s.healed {
			if err := s.chaos(); err != nil {
				return err
			}
		}
		for _, i := range s.rng.Perm(len(s.nodes)) {
			sn := s.nodes[i]
			// 10% of ticks are skipped: clocks drift apart.
			if sn.node != nil && !sn.paused(s.now) && s.rng.IntN(10) != 0 {
				sn.node.Tick()
				s.stats.Ticks++
				if err := s.afterStep(sn); err != nil {
					return err
				}
			}
		}
		for _, sn := range s.nodes {
			// A process resuming from a pause may serve a client before it
			// reads what the network queued for it: a deposed leader must
			// not answer from its stale view.
			if sn.node != nil && sn.pausedUntil == s.now && s.now > 0 && s.rng.IntN(2) == 0 {
				if err := s.readAt(sn); err != nil {
					return err
				}
			}
		}
		if err := s.deliver(); err != nil {
			return err
		}
		if err := s.propose(); err != nil {
			return err
		}
		if err := s.read(); err != nil {
			return err
		}
		for _, i := range s.rng.Perm(len(s.nodes)) {
			if err := s.runtime(s.nodes[i]); err != nil {
				return err
			}
		}
		if s.liveDone {
			return s.finalChecks()
		}
	}
	lag := ""
	for _, sn := range s.nodes {
		lag += fmt.Sprintf(" %d:%d", sn.id, sn.lastApplied)
	}
	return fmt.Errorf("%w: liveness: entry %d committed but not applied everywhere within %d more ticks (applied:%s)", ErrViolation, s.liveIndex, s.opts.CatchUpTicks, lag)
}

func (s *sim) chaos() error {
	if s.rng.IntN(1000) < s.leaderCrashRate {
		// Crash whoever leads: the interesting histories (paper Figure 8)
		// need leaders to die with entries half replicated.
		for _, sn := range s.nodes {
			if sn.node != nil && sn.node.SoftState().Role == consensus.RoleLeader {
				s.crash(sn)
				break
			}
		}
	}
	r := s.rng.IntN(1000)
	switch {
	case r < s.crashPerMille: // crash
		sn := s.nodes[s.rng.IntN(len(s.nodes))]
		if sn.node != nil {
			s.crash(sn)
		}
	case r < 60: // restart
		for _, sn := range s.nodes {
			if sn.node == nil && !sn.retired {
				s.tracef("restart %d", sn.id)
				s.stats.Restarts++
				return s.start(sn)
			}
		}
	case r < 62: // leadership transfer asked at a random node
		if live := s.liveNodes(); len(live) > 0 {
			sn := live[s.rng.IntN(len(live))]
			to := raftmsg.NodeID(1 + s.rng.IntN(len(s.nodes)))
			err := sn.node.TransferLeadership(to)
			s.tracef("transfer to %d asked at %d: %v", to, sn.id, err)
			if err != nil && !errors.Is(err, consensus.ErrNoLeader) && !errors.Is(err, consensus.ErrBadTransfer) {
				return fmt.Errorf("%w: transfer at %d: %v", ErrViolation, sn.id, err)
			}
			s.stats.Transfers++
			return s.afterStep(sn)
		}
	case r < 68: // pause a process for one to five election timeouts
		sn := s.nodes[s.rng.IntN(len(s.nodes))]
		if sn.node != nil && !sn.paused(s.now) {
			sn.pausedUntil = s.now + electionTicks + s.rng.IntN(4*electionTicks)
			s.stats.Pauses++
			s.tracef("pause %d until %d", sn.id, sn.pausedUntil)
		}
	case r < 75: // partition
		s.stats.Partitions++
		for _, sn := range s.nodes {
			sn.part = s.rng.IntN(2)
		}
		s.tracef("partition %v", s.parts())
	case r < 85: // cut one link both ways (asymmetric reachability)
		a, b := raftmsg.NodeID(1+s.rng.IntN(len(s.nodes))), raftmsg.NodeID(1+s.rng.IntN(len(s.nodes)))
		if a != b {
			s.stats.LinkCuts++
			s.cuts[[2]raftmsg.NodeID{min(a, b), max(a, b)}] = true
			s.tracef("cut %d-%d", a, b)
		}
	case r < 110: // heal
		if s.parts() != "" || len(s.cuts) > 0 {
			s.stats.Heals++
			s.tracef("heal")
		}
		for _, sn := range s.nodes {
			sn.part = 0
		}
		clear(s.cuts)
	case r < 140: // a membership change
		return s.changeMembership(nil)
	}
	if l := s.freshLeader; l != nil {
		s.freshLeader = nil
		if l.node != nil && !l.paused(s.now) && s.rng.IntN(3) == 0 {
			return s.changeMembership(l)
		}
	}
	return nil
}

func (s *sim) parts() string {
	out := ""
	for _, sn := range s.nodes {
		if sn.part != 0 {
			out += fmt.Sprintf("%d,", sn.id)
		}
	}
	return out
}

func (s *sim) crash(sn *simNode) {
	s.tracef("crash %d (%d readys not durable)", sn.id, len(sn.pending))
	s.stats.Crashes++
	sn.node = nil
	sn.pending = nil
}

func (s *sim) heal() error {
	s.healed = true
	clear(s.cuts)
	s.tracef("heal all")
	for _, sn := range s.nodes {
		sn.part = 0
		sn.pausedUntil = min(sn.pausedUntil, s.now)
		if sn.node == nil && !sn.retired {
			s.stats.Restarts++
			if err := s.start(sn); err != nil {
				return err
			}
		}
	}
	return nil
}

func (s *sim) dropRate() int {
	if s.healed {
		return 0
	}
	return 5
}

func (s *sim) sendAll(msgs []raftmsg.Message) error {
	for _, m := range msgs {
		s.stats.MsgsSent++
		if err := s.checkAckDurable(&m); err != nil {
			return err
		}
		var snap snapFlight
		if m.Type == raftmsg.MsgSnap {
			var err error
			if snap, err = s.attachSnapshot(&m); err != nil {
				return err
			}
		}
		if s.blocked(m.From, m.To) || s.rng.IntN(100) < s.dropRate() {
			s.stats.MsgsDropped++
			if m.Type == raftmsg.MsgSnap {
				s.reportSnapshot(&inFlight{m: m, snap: snap}, false)
			} else if m.Type == raftmsg.MsgApp && s.blocked(m.From, m.To) && s.rng.IntN(2) == 0 {
				// The transport saw the connection fail.
				from := s.maybeNode(m.From)
				from.reports = append(from.reports, snapReport{to: m.To, unreachable: true, incarnation: from.incarnation})
			}
			continue
		}
		at := s.now + s.rng.IntN(maxDelayTicks+1)
		if s.healed || s.rng.IntN(100) < 90 {
			// Mostly FIFO per link, like a TCP connection; the rest is
			// reordered, like messages across a reconnection. A healed
			// network keeps its connections: FIFO.
			link := [2]raftmsg.NodeID{m.From, m.To}
			at = max(at, s.linkLast[link])
			s.linkLast[link] = at
		}
		s.net = append(s.net, inFlight{m: m, deliverAt: at, snap: snap})
		if s.rng.IntN(100) < 3 {
			s.stats.MsgsDup++
			snap.report = false
			s.net = append(s.net, inFlight{m: m, deliverAt: s.now + s.rng.IntN(maxDelayTicks+1), snap: snap})
		}
	}
	return nil
}

// blocked reports whether the network separates a from b.
func (s *sim) blocked(a, b raftmsg.NodeID) bool {
	x, y := s.maybeNode(a), s.maybeNode(b)
	return x == nil || y == nil || x.part != y.part || s.cuts[[2]raftmsg.NodeID{min(a, b), max(a, b)}]
}

func (s *sim) deliver() error {
	var due []inFlight
	kept := s.net[:0]
	for _, f := range s.net {
		if f.deliverAt <= s.now {
			due = append(due, f)
		} else {
			kept = append(kept, f)
		}
	}
	s.net = kept
	// Interleave the links at random, keeping each link's send order (the
	// reordering comes from the delivery times).
	due = s.interleave(due)
	for _, f := range due {
		to := s.maybeNode(f.m.To)
		if to == nil {
			s.stats.MsgsDropped++
			continue
		}
		if to.node != nil && to.paused(s.now) {
			f.deliverAt = to.pausedUntil
			s.net = append(s.net, f)
			continue
		}
		if to.node == nil || s.blocked(f.m.From, f.m.To) {
			s.stats.MsgsDropped++
			if f.m.Type == raftmsg.MsgSnap {
				s.reportSnapshot(&f, false)
			}
			continue
		}
		s.stats.MsgsDelivered++
		if f.m.Type == raftmsg.MsgTimeoutNow {
			s.stats.TimeoutNows++
		}
		m := f.m
		// The wire decodes into fresh buffers: the receiver must not share
		// the sender's entries.
		m.Entries = cloneEntries(m.Entries)
		s.tracef("deliver %v %d->%d term=%d idx=%d logterm=%d commit=%d n=%d reject=%v hint=%d", m.Type, m.From, m.To, m.Term, m.Index, m.LogTerm, m.Commit, len(m.Entries), m.Reject, m.RejectHint)
		if m.Type == raftmsg.MsgSnap {
			s.receiveSnapshot(to, &f)
		}
		if err := to.node.Step(m); err != nil {
			// A correct peer never sends what Step refuses.
			return fmt.Errorf("%w: node %d refused %v from %d: %v", ErrViolation, m.To, m.Type, m.From, err)
		}
		if m.Type == raftmsg.MsgSnap {
			if to.node.Status().SnapshotIndex != m.Snapshot.Index {
				s.stats.SnapsRefused++
			}
			s.reportSnapshot(&f, true)
		}
		if err := s.afterStep(to); err != nil {
			return err
		}
	}
	return nil
}

func (s *sim) interleave(due []inFlight) []inFlight {
	var links [][]inFlight
	index := map[[2]raftmsg.NodeID]int{}
	for _, f := range due {
		k := [2]raftmsg.NodeID{f.m.From, f.m.To}
		i, ok := index[k]
		if !ok {
			i = len(links)
			index[k] = i
			links = append(links, nil)
		}
		links[i] = append(links[i], f)
	}
	out := make([]inFlight, 0, len(due))
	for len(links) > 0 {
		i := s.rng.IntN(len(links))
		out = append(out, links[i][0])
		links[i] = links[i][1:]
		if len(links[i]) == 0 {
			links = append(links[:i], links[i+1:]...)
		}
	}
	return out
}

func cloneEntries(ents []raftmsg.Entry) []raftmsg.Entry {
	if ents == nil {
		return nil
	}
	out := make([]raftmsg.Entry, len(ents))
	for i, e := range ents {
		e.Data = slices.Clone(e.Data)
		out[i] = e
	}
	return out
}

func (s *sim) propose() error {
	live := s.liveNodes()
	if len(live) == 0 {
		return nil
	}
	// After healing, a trickle: liveness is about the cluster recovering,
	// not about draining an unbounded load.
	rate := s.proposePercent
	if s.healed {
		rate = 10
	}
	{
		if s.rng.IntN(100) >= rate {
			return nil
		}
		sn := live[s.rng.IntN(len(live))]
		k := 1 + s.rng.IntN(3)
		ents := make([]raftmsg.Entry, k)
		for i := range ents {
			s.nextReq++
			size := 8 + s.rng.IntN(64)
			if s.rng.IntN(40) == 0 {
				size = bigEntryBytes
			}
			data := make([]byte, size)
			binary.LittleEndian.PutUint64(data, s.nextReq)
			ents[i] = raftmsg.Entry{RequestID: s.nextReq, Data: data}
			if s.healed {
				s.livenessReqs[s.nextReq] = true
			}
		}
		s.stats.Proposals++
		err := sn.node.Propose(ents)
		s.tracef("propose %d entries at %d: %v", k, sn.id, err)
		if err != nil {
			if consensus.RejectReasonOf(err) == raftmsg.RejectNone {
				return fmt.Errorf("%w: propose at %d: %v", ErrViolation, sn.id, err)
			}
			s.stats.ProposalsRefused++
		}
		if err := s.afterStep(sn); err != nil {
			return err
		}
	}
	return nil
}

// read starts a linearizable read on a random node.
func (s *sim) read() error {
	live := s.liveNodes()
	if len(live) == 0 || s.rng.IntN(100) >= s.readPercent {
		return nil
	}
	return s.readAt(live[s.rng.IntN(len(live))])
}

func (s *sim) readAt(sn *simNode) error {
	if s.rng.IntN(2) == 0 {
		return s.leaseRead(sn)
	}
	s.nextReq++
	s.readStart[s.nextReq] = uint64(len(s.global))
	s.stats.Reads++
	err := sn.node.ReadIndex(s.nextReq)
	s.tracef("read %d at %d (committed %d): %v", s.nextReq, sn.id, len(s.global), err)
	if err != nil {
		if consensus.RejectReasonOf(err) == raftmsg.RejectNone {
			return fmt.Errorf("%w: read at %d: %v", ErrViolation, sn.id, err)
		}
		s.stats.ReadsRefused++
		delete(s.readStart, s.nextReq)
	}
	return s.afterStep(sn)
}

// leaseTicks is how long after sending a heartbeat round its answers hold
// the lease, by the runtime's clock: the election timeout less a drift
// bound of one tick (thesis §6.4.1).
const leaseTicks = electionTicks - 1

// leaseRead serves a read from the leader's lease, as the runtime would,
// and checks it against everything committed before it.
func (s *sim) leaseRead(sn *simNode) error {
	s.stats.LeaseReads++
	index, round, err := sn.node.LeaseRead()
	if err != nil {
		if consensus.RejectReasonOf(err) == raftmsg.RejectNone {
			return fmt.Errorf("%w: lease read at %d: %v", ErrViolation, sn.id, err)
		}
		return nil
	}
	sent, ok := sn.roundSent[round]
	if !ok {
		return fmt.Errorf("%w: node %d claims a lease from round %d, which it never sent", ErrViolation, sn.id, round)
	}
	if s.now >= sent+leaseTicks {
		s.tracef("lease read at %d: round %d sent at %d expired", sn.id, round, sent)
		return nil
	}
	s.tracef("lease read at %d: index %d (round %d sent at %d), committed %d", sn.id, index, round, sent, len(s.global))
	if index < uint64(len(s.global)) {
		return fmt.Errorf("%w: linearizability: lease read at %d got index %d (round %d sent at tick %d), but %d entries were committed before it", ErrViolation, sn.id, index, round, sent, len(s.global))
	}
	s.stats.LeaseServed++
	return nil
}

func (s *sim) readDone(sn *simNode, rd *consensus.Ready) error {
	for _, rs := range rd.ReadStates {
		start, ok := s.readStart[rs.RequestID]
		if !ok {
			// A duplicated request or answer: the runtime ignores ids it
			// no longer waits for.
			continue
		}
		delete(s.readStart, rs.RequestID)
		if rs.Index < start {
			return fmt.Errorf("%w: linearizability: read %d at node %d got index %d, but %d entries were committed before it began", ErrViolation, rs.RequestID, sn.id, rs.Index, start)
		}
		s.stats.ReadsServed++
	}
	for _, r := range rd.RejectedReads {
		delete(s.readStart, r.RequestID)
		s.stats.ReadsRefused++
	}
	return nil
}

func (s *sim) liveNodes() []*simNode {
	var out []*simNode
	for _, sn := range s.nodes {
		if sn.node != nil && !sn.paused(s.now) {
			out = append(out, sn)
		}
	}
	return out
}

// runtime plays the node runtime: take Readys (pipelining up to
// maxPipelined not yet durable), persist the oldest, send, apply.
func (s *sim) runtime(sn *simNode) error {
	if sn.paused(s.now) {
		return nil
	}
	s.checkRemoved(sn)
	if err := s.runReports(sn); err != nil {
		return err
	}
	if err := s.maybeCompact(sn); err != nil {
		return err
	}
	for sn.node != nil && sn.node.HasReady() && len(sn.pending) < maxPipelined && s.rng.IntN(10) < 8 {
		voted, err := s.takeReady(sn)
		if err != nil {
			return err
		}
		// A crash after sending, before the fsync: everything pending is
		// lost; a supervisor restarts the process at once. Whatever left
		// before persistence (it must be nothing durable-dependent) is out.
		// Most likely right after a vote: when durability matters most.
		odds := 300
		if voted {
			odds = 15
		}
		if !s.healed && s.rng.IntN(odds) == 0 {
			s.crash(sn)
			s.tracef("restart %d at once", sn.id)
			s.stats.Restarts++
			return s.start(sn)
		}
	}
	for sn.node != nil && len(sn.pending) > 0 && s.rng.IntN(10) < 6 {
		if err := s.persistOldest(sn); err != nil {
			return err
		}
		// A crash between fsync and the next step: loses nothing durable.
		if !s.healed && s.rng.IntN(400) == 0 {
			s.crash(sn)
		}
	}
	return nil
}

// takeReady takes one Ready; voted reports that a vote is not durable yet
// (in this Ready or an earlier one).
func (s *sim) takeReady(sn *simNode) (voted bool, err error) {
	rd := sn.node.Ready()
	voted = rd.HardState.Vote != raftmsg.None && rd.HardState.Vote != sn.durHS.Vote
	for _, p := range sn.pending {
		// A vote still on its way to disk.
		voted = voted || !p.hs.IsEmpty() && p.hs.Vote != raftmsg.None && p.hs.Vote != sn.durHS.Vote
	}
	s.tracef("ready %d seq=%d role=%v term=%d lead=%d hs=%+v ents=%d committed=%d msgs=%d after=%d",
		sn.id, rd.Seq, rd.SoftState.Role, rd.SoftState.Term, rd.SoftState.Leader, rd.HardState, len(rd.Entries), len(rd.CommittedEntries), len(rd.Messages), len(rd.MessagesAfterPersist))
	// The snapshot first: the state machine and the log restart from it.
	snap, err := s.installReady(sn, rd.Snapshot)
	if err != nil {
		return false, err
	}
	if len(rd.Entries) > 0 {
		if err := s.extendView(&sn.view, rd.Entries, fmt.Sprintf("node %d handed-out log", sn.id)); err != nil {
			return false, err
		}
		if err := s.checkOneInFlight(sn); err != nil {
			return false, err
		}
	}
	// Append-time (thesis §4.1): the configuration in force is the latest
	// in the log just handed out, and Ready.ConfState reports each change.
	if rd.ConfState != nil {
		sn.reportedConf = *rd.ConfState
	}
	if cs := sn.view.confOf(); voterDiff(cs, sn.reportedConf) != 0 || !slices.Equal(cs.Learners, sn.reportedConf.Learners) {
		return false, fmt.Errorf("%w: node %d reports configuration %v, its log gives %v", ErrViolation, sn.id, sn.reportedConf, cs)
	}
	if err := s.sendAll(rd.Messages); err != nil {
		return false, err
	}
	if rd.HeartbeatRound != 0 {
		sn.roundSent[rd.HeartbeatRound] = s.now
	}
	if err := s.readDone(sn, &rd); err != nil {
		return false, err
	}
	// Copy the entries' headers: the durable log must not alias the core's.
	sn.pending = append(sn.pending, pendingReady{snap: snap, seq: rd.Seq, hs: rd.HardState, ents: slices.Clone(rd.Entries), after: rd.MessagesAfterPersist,
		commit: sn.node.HardState().Commit})
	s.stats.MaxPipelined = max(s.stats.MaxPipelined, len(sn.pending))
	for _, e := range rd.CommittedEntries {
		if err := s.apply(sn, e); err != nil {
			return false, err
		}
	}
	if k := len(rd.CommittedEntries); k > 0 {
		if err := sn.node.AckApplied(rd.CommittedEntries[k-1].Index); err != nil {
			return false, fmt.Errorf("%w: %v", ErrViolation, err)
		}
	}
	return voted, s.afterStep(sn)
}

func (s *sim) persistOldest(sn *simNode) error {
	p := sn.pending[0]
	sn.pending = sn.pending[1:]
	// What the node durably held of the committed sequence, up to the
	// commit index it knew: an entry committed elsewhere but not known
	// committed here may be overwritten by a stale leader's append (a
	// learner, or a voter outside both majorities, still in an old term),
	// and is restored later by the current leader.
	before := min(s.committedPrefix(&sn.dur), p.commit)
	if !p.snap.meta.IsEmpty() {
		// A received snapshot: durable, replacing the log, before the hard
		// state and entries of its Ready.
		sn.durSnap, sn.durSnapState = p.snap.meta, p.snap.state
		sn.durLog = nil
		s.setCommittedView(&sn.dur, p.snap.meta.Index)
	}
	if !p.hs.IsEmpty() {
		if p.hs.Term < sn.durHS.Term || p.hs.Term == sn.durHS.Term && sn.durHS.Vote != raftmsg.None && p.hs.Vote != sn.durHS.Vote {
			return fmt.Errorf("%w: node %d durable hard state went from %+v to %+v", ErrViolation, sn.id, sn.durHS, p.hs)
		}
		sn.durHS = p.hs
	}
	if len(p.ents) > 0 {
		first, base := p.ents[0].Index, sn.durSnap.Index
		last := base + uint64(len(sn.durLog))
		if first > last+1 || first <= base {
			return fmt.Errorf("%w: node %d persists entries from %d after a durable log (%d, %d]", ErrViolation, sn.id, first, base, last)
		}
		if first <= last {
			s.stats.Truncations++
		}
		sn.durLog = append(sn.durLog[:first-base-1], p.ents...)
		if err := s.extend(&sn.dur, p.ents, fmt.Sprintf("node %d durable log", sn.id)); err != nil {
			return err
		}
		if err := extendConfs(&sn.dur, p.ents, fmt.Sprintf("node %d durable log", sn.id)); err != nil {
			return err
		}
	}
	// No committed entry known to the node is ever lost from its durable
	// log.
	if after := s.committedPrefix(&sn.dur); after < before {
		return fmt.Errorf("%w: node %d lost committed entry %d (durably held %d committed entries, now %d)", ErrViolation, sn.id, after+1, before, after)
	}
	s.tracef("persisted %d seq=%d hs=%+v ents=%d durable-last=%d", sn.id, p.seq, p.hs, len(p.ents), len(sn.durLog))
	if err := s.sendAll(p.after); err != nil {
		return err
	}
	answered := answeredHeartbeat(p.after) // before the ack: its buffer is reused after
	if err := sn.node.AckPersisted(p.seq); err != nil {
		return fmt.Errorf("%w: %v", ErrViolation, err)
	}
	if err := s.afterStep(sn); err != nil {
		return err
	}
	// A crash and immediate restart right after answering a heartbeat: the
	// answer may be holding up some leader's lease, which the restarted
	// node must still respect.
	if !s.healed && answered && s.rng.IntN(20) == 0 {
		s.crash(sn)
		s.tracef("restart %d at once", sn.id)
		s.stats.Restarts++
		return s.start(sn)
	}
	return nil
}

func answeredHeartbeat(msgs []raftmsg.Message) bool {
	for i := range msgs {
		if msgs[i].Type == raftmsg.MsgHeartbeatResp {
			return true
		}
	}
	return false
}

// committedPrefix is how many entries of the applied sequence v holds.
func (s *sim) committedPrefix(v *logView) uint64 {
	n := min(v.len(), uint64(len(s.global)))
	// Prefix hashes match up to some point and then never again.
	lo, hi := uint64(0), n
	for lo < hi {
		mid := (lo + hi + 1) / 2
		if v.prefix[mid-1] == s.global[mid-1] {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	return lo
}

func (s *sim) entryHash(prev uint64, e *raftmsg.Entry) uint64 {
	var h maphash.Hash
	h.SetSeed(s.seedHash)
	var b [33]byte
	binary.LittleEndian.PutUint64(b[0:], prev)
	binary.LittleEndian.PutUint64(b[8:], e.Index)
	binary.LittleEndian.PutUint64(b[16:], e.Term)
	binary.LittleEndian.PutUint64(b[24:], e.RequestID)
	b[32] = byte(e.Type)
	h.Write(b[:])
	h.Write(e.Data)
	return h.Sum64()
}

// extend replaces v from ents[0].Index on with ents and checks Log Matching
// (paper §5.3, Figure 3): entries with the same index and term have the same
// prefix, in every log ever seen.
func (s *sim) extend(v *logView, ents []raftmsg.Entry, what string) error {
	first := ents[0].Index
	if first == 0 || first > v.len()+1 {
		return fmt.Errorf("%w: %s: entries from %d after last %d", ErrViolation, what, first, v.len())
	}
	v.terms = v.terms[:first-1]
	v.prefix = v.prefix[:first-1]
	for i := range ents {
		e := &ents[i]
		if e.Index != first+uint64(i) {
			return fmt.Errorf("%w: %s: entry %d has index %d", ErrViolation, what, first+uint64(i), e.Index)
		}
		var prev, prevTerm uint64
		if k := len(v.prefix); k > 0 {
			prev, prevTerm = v.prefix[k-1], v.terms[k-1]
		}
		if e.Term < prevTerm {
			return fmt.Errorf("%w: %s: term goes down from %d to %d at %d", ErrViolation, what, prevTerm, e.Term, e.Index)
		}
		h := s.entryHash(prev, e)
		key := [2]uint64{e.Index, e.Term}
		if old, ok := s.prefixAt[key]; !ok {
			s.prefixAt[key] = h
		} else if old != h {
			return fmt.Errorf("%w: log matching: %s has entry %d of term %d with a prefix differing from another log's", ErrViolation, what, e.Index, e.Term)
		}
		v.terms = append(v.terms, e.Term)
		v.prefix = append(v.prefix, h)
	}
	return nil
}

// extendView is extend plus the view's conf-change entries.
func (s *sim) extendView(v *logView, ents []raftmsg.Entry, what string) error {
	if err := s.extend(v, ents, what); err != nil {
		return err
	}
	return extendConfs(v, ents, what)
}

// apply checks State Machine Safety (paper Figure 3): every node applies a
// prefix of one global sequence; and that an entry is durable on a quorum
// when it is first applied anywhere.
func (s *sim) apply(sn *simNode, e raftmsg.Entry) error {
	if e.Index != sn.lastApplied+1 {
		return fmt.Errorf("%w: node %d applies %d after %d", ErrViolation, sn.id, e.Index, sn.lastApplied)
	}
	if e.Index > sn.view.len() {
		return fmt.Errorf("%w: node %d applies %d beyond its handed-out log %d", ErrViolation, sn.id, e.Index, sn.view.len())
	}
	h := sn.view.prefix[e.Index-1]
	if e.Index > uint64(len(s.global)) {
		// Applied before any leader was seen committing it (possible when
		// the leader's commit reached this node before the leader's next
		// step was checked).
		// The committing leader's term is at most this node's.
		if err := s.commitUpTo(sn, e.Index, sn.node.SoftState().Term, sn.node.ConfState()); err != nil {
			return err
		}
	}
	if s.global[e.Index-1] != h {
		return fmt.Errorf("%w: state machine safety: node %d applies entry %d (term %d) different from the one committed", ErrViolation, sn.id, e.Index, e.Term)
	}
	sn.lastApplied, sn.appliedState = e.Index, h
	s.stats.EntriesApplied++
	if s.livenessReqs[e.RequestID] && s.liveIndex == 0 {
		s.liveIndex = e.Index
	}
	s.updateLive()
	return nil
}

// updateLive notes when every node has applied the liveness entry.
func (s *sim) updateLive() {
	if s.liveIndex != 0 {
		all := true
		for _, o := range s.nodes {
			if o.retired || !s.member(o) {
				continue // removed: nothing to apply
			}
			if o.node == nil || o.lastApplied < s.liveIndex {
				all = false
			}
		}
		s.liveDone = all
	}
}

// commitUpTo extends the committed sequence with sn's handed-out log up to
// index, checking that each newly committed entry is durable on a quorum
// (persist before acknowledging, thesis §10.2.1) and present in the log of
// every leader of a later term (Leader Completeness, paper §5.4).
func (s *sim) commitUpTo(sn *simNode, index, commitTerm uint64, conf raftmsg.ConfState) error {
	if index > sn.view.len() {
		return fmt.Errorf("%w: node %d commits %d beyond its handed-out log %d", ErrViolation, sn.id, index, sn.view.len())
	}
	for i := uint64(len(s.global)) + 1; i <= index; i++ {
		h, term := sn.view.prefix[i-1], sn.view.terms[i-1]
		// Durable on a majority of the voters the committer runs with
		// (a learner or a removed leader never counts, thesis §4.2).
		if durable := s.durableOnMajority(conf, i, h); durable < quorum.Majority(len(conf.Voters)) {
			return fmt.Errorf("%w: entry %d (term %d) committed by %d while durable on only %d of its voters %v", ErrViolation, i, term, sn.id, durable, conf.Voters)
		}
		for _, o := range s.nodes {
			if o.node != nil {
				if ss := o.node.SoftState(); ss.Role == consensus.RoleLeader && ss.Term > commitTerm {
					if t, ok := s.termAt(o, i); !ok || t != term {
						return fmt.Errorf("%w: leader completeness: leader %d of term %d lacks committed entry %d of term %d", ErrViolation, o.id, ss.Term, i, term)
					}
				}
			}
		}
		s.global = append(s.global, h)
		s.globalTerm = append(s.globalTerm, term)
		s.commitTerm = append(s.commitTerm, commitTerm)
		if err := s.noteCommittedConf(&sn.view, i); err != nil {
			return err
		}
	}
	// No two disjoint quorums: the committer runs a configuration within
	// one voter of the committed one.
	if d := voterDiff(conf, s.committedConf); d > 1 {
		return fmt.Errorf("%w: one server at a time: %d commits %d with voters %v, %d voters away from the committed %v", ErrViolation, sn.id, index, conf.Voters, d, s.committedConf.Voters)
	}
	return nil
}

// lastOf is the (index, term) of a node's last entry: its in-memory log
// when up, the durable one (what it restarts with) when down.
func (s *sim) lastOf(sn *simNode) (uint64, uint64) {
	if sn.node != nil {
		i := sn.node.LastIndex()
		t, _ := sn.node.LogTerm(i)
		return i, t
	}
	if k := len(sn.dur.terms); k > 0 {
		return uint64(k), sn.dur.terms[k-1]
	}
	return 0, 0
}

func (s *sim) hasEntry(sn *simNode, index, term uint64) bool {
	if sn.node != nil {
		t, ok := s.termAt(sn, index)
		return ok && t == term
	}
	return sn.dur.len() >= index && sn.dur.terms[index-1] == term
}

// checkCommittedSafe checks the heart of the Leader Completeness proof
// (paper §5.4.3): no node lacking the last committed entry is as
// up-to-date (§5.4.1) as a majority of the nodes, so none can ever be
// elected without it. Checking the last committed entry suffices: a log
// lacking an earlier one lacks it too (Log Matching).
func (s *sim) checkCommittedSafe() error {
	c := uint64(len(s.global))
	if c == 0 {
		return nil
	}
	term := s.globalTerm[c-1]
	for _, x := range s.nodes {
		if x.retired || s.hasEntry(x, c, term) {
			continue
		}
		// Per configuration: x asks the voters of its own configuration.
		if ok, voters, cs := s.canBeElected(x); ok {
			xi, xt := s.lastOf(x)
			return fmt.Errorf("%w: leader completeness: node %d (last %d/%d) lacks committed entry %d of term %d yet could be elected by %d of its voters %v", ErrViolation, x.id, xi, xt, c, term, voters, cs.Voters)
		}
	}
	return nil
}

// afterStep checks the node that just acted.
func (s *sim) afterStep(sn *simNode) error {
	s.stats.Steps++
	if err := s.checkCommittedSafe(); err != nil {
		return err
	}
	if sn.node == nil {
		return nil
	}
	if err := sn.node.CheckInvariants(false); err != nil {
		return fmt.Errorf("%w: %v", ErrViolation, err)
	}
	ss := sn.node.SoftState()
	if err := s.checkCampaigner(sn, ss); err != nil {
		return err
	}
	if ss.Role != consensus.RoleLeader {
		return nil
	}
	s.maxLeaderTerm = max(s.maxLeaderTerm, ss.Term)
	// Election Safety (Figure 3): at most one leader per term.
	if l, ok := s.leaders[ss.Term]; !ok {
		s.leaders[ss.Term] = sn.id
		s.stats.Leaders++
		s.tracef("leader %d term %d", sn.id, ss.Term)
	} else if l != sn.id {
		return fmt.Errorf("%w: election safety: %d and %d both lead term %d", ErrViolation, l, sn.id, ss.Term)
	}
	if c := sn.node.HardState().Commit; c > uint64(len(s.global)) {
		if err := s.commitUpTo(sn, c, ss.Term, sn.node.ConfState()); err != nil {
			return err
		}
	} else if c > 0 && (c > sn.view.len() || sn.view.prefix[c-1] != s.global[c-1]) {
		return fmt.Errorf("%w: leader %d of term %d has a commit index %d whose entries differ from the committed ones", ErrViolation, sn.id, ss.Term, c)
	}
	if sn.leaderTerm != ss.Term {
		sn.leaderTerm = ss.Term
		s.freshLeader = sn
		if err := s.checkNoLiveLease(sn, ss.Term); err != nil {
			return err
		}
		// Leader Completeness (§5.4.3): the new leader holds every entry
		// committed in an earlier term.
		for i, t := range s.globalTerm {
			if s.commitTerm[i] >= ss.Term {
				continue
			}
			if lt, ok := s.termAt(sn, uint64(i)+1); !ok || lt != t {
				return fmt.Errorf("%w: leader completeness: new leader %d of term %d lacks committed entry %d of term %d (has term %d)", ErrViolation, sn.id, ss.Term, i+1, t, lt)
			}
		}
	}
	return nil
}

// checkNoLiveLease: a leader of a newer term is never elected while a node
// of an older term still holds a lease by its runtime's clock (thesis
// §6.4.1), paused or not.
func (s *sim) checkNoLiveLease(leader *simNode, term uint64) error {
	for _, o := range s.nodes {
		if o == leader || o.node == nil || o.node.SoftState().Term >= term {
			// A leader of an older term elected late (its votes were
			// delayed) cannot commit anything new: no threat to a lease.
			continue
		}
		_, round, err := o.node.LeaseRead()
		if err != nil {
			continue
		}
		if sent := o.roundSent[round]; s.now < sent+leaseTicks {
			return fmt.Errorf("%w: lease: %d elected for term %d at tick %d while %d (term %d) holds a lease from round %d sent at tick %d", ErrViolation, leader.id, term, s.now, o.id, o.node.SoftState().Term, round, sent)
		}
	}
	return nil
}

func (s *sim) finalChecks() error {
	if err := s.checkNotRemoved(); err != nil {
		return err
	}
	for _, sn := range s.nodes {
		if sn.node != nil {
			if err := sn.node.CheckInvariants(true); err != nil {
				return fmt.Errorf("%w: %v", ErrViolation, err)
			}
		}
	}
	return nil
}
