// Package consensus is edgekv's Raft core: leader election with pre-vote
// and check-quorum, log replication with per-follower flow control, and
// commitment (Raft paper §5, thesis §3, §6.2, §9.6, §10.2.1), written as a
// pure, single-threaded, deterministic state machine.
//
// It must never start goroutines, read a clock, touch the network or the
// disk, or use global randomness: it imports none of net, os, time or sync.
// Time moves only through Tick, input arrives only through Step and
// Propose, and everything the node wants done leaves in a Ready. The same
// inputs and Config.RandSeed always give the same outputs, which is what
// lets consensus/sim replay any failure from its seed.
//
// # The runtime's loop
//
// One goroutine owns a Node and repeats, in any interleaving:
//
//	n.Tick()                       // every heartbeat interval / HeartbeatTicks
//	n.Step(msg)                    // for each message from a peer
//	n.Propose(entries)             // for each batch of client commands
//	if n.HasReady() {
//	    rd := n.Ready()
//	    // 1. Send rd.Messages now (they may leave before the fsync below:
//	    //    a leader's appends go out while it writes them, §10.2.1).
//	    // 2. Persist, in Seq order: if !rd.Snapshot.IsEmpty() make that
//	    //    received snapshot durable and reset the log to it; if
//	    //    !rd.HardState.IsEmpty() write it; write rd.Entries, where the
//	    //    first entry replaces the entry at its index and everything
//	    //    after it; fsync. Restore the state machine from rd.Snapshot.
//	    // 3. Then send rd.MessagesAfterPersist (votes, append
//	    //    acknowledgements) and call n.AckPersisted(rd.Seq).
//	    // 4. Apply rd.CommittedEntries in order; call
//	    //    n.AckApplied(lastAppliedIndex).
//	    // 5. Report rd.RejectedProposals to the waiting clients; serve
//	    //    each of rd.ReadStates once applied >= its Index; refuse
//	    //    rd.RejectedReads.
//	}
//
// Steps 2-3 may lag behind: the runtime may take further Readys before an
// earlier one is durable (pipelining), as long as it persists them in Seq
// order and releases each Ready's MessagesAfterPersist only once that
// Ready and all earlier ones are durable. AckPersisted(seq) is cumulative.
// Step 4 may run at once: CommittedEntries are always durable locally
// already. A runtime that does everything in order may call Advance(rd)
// instead of the two acknowledgements.
//
// Persist before send is data, not convention: a message that reports
// durable state (a granted vote, a candidate's own vote request, an append
// acknowledgement) is only ever put in MessagesAfterPersist. The leader
// counts itself toward a commit quorum only up to the index acknowledged by
// AckPersisted.
//
// # Ownership
//
// Ready's Messages and RejectedProposals are valid until the next call to
// Ready; MessagesAfterPersist until AckPersisted covers its Seq (send or
// copy them first); Entries and CommittedEntries are never modified by the
// core and stay valid while held. The runtime modifies and appends to none
// of them; reusing these buffers is how the leader's hot path allocates
// nothing. Entries inside messages point into the log: the transport must
// encode (or copy) them before the log could be discarded. Propose keeps
// each entry's Data without copying on the leader; Step copies the Data of
// the entries it appends (a decoder may point them into a pooled buffer).
//
// # Proposals
//
// Propose takes a batch of EntryNormal entries, each with the request id
// the runtime uses to find the waiting client (Entry.RequestID comes back
// in CommittedEntries). A leader appends them; a follower forwards them to
// its leader in a MsgProp. With no leader, on a leader that has not heard
// from a quorum for half an election timeout, or with too many uncommitted
// bytes, Propose refuses at once (ErrNoLeader, ErrNotQuorum, ErrOverloaded;
// RejectReasonOf gives the raftmsg.RejectReason). A leader that refuses a
// forwarded batch answers with a MsgPropResp, which surfaces in the
// forwarding node's Ready.RejectedProposals. A proposal can still be lost
// (dropped message, leader change before commit): the runtime's request
// timeout covers that, and the request id lets it recognise the entry if it
// commits after all.
//
// # Linearizable reads
//
// ReadIndex(requestID) starts a read (thesis §6.4). The leader refuses
// until an entry of its term has committed (ErrNotReady), records its
// commit index, and confirms it is still leader with a round of heartbeats
// acknowledged by a majority; every read started between two Readys shares
// one round. A follower asks its leader (MsgReadIndex). Answers come in
// Ready.ReadStates: serve the read once the state machine has applied
// Index. Refusals come at once (ErrNoLeader, ErrNotReady, ErrNotQuorum,
// ErrOverloaded) or later in Ready.RejectedReads (leadership lost, or the
// leader refused a forwarded read). Duplicate answers are possible on a
// duplicating network: ignore request ids no longer waited for.
//
// # Leadership transfer
//
// TransferLeadership(to) on the leader (or forwarded by a follower) stops
// accepting proposals (ErrTransferring), catches `to` up, and sends it
// MsgTimeoutNow; `to` campaigns at once, and its vote requests carry a flag
// that lets followers grant them even while they still hear from the old
// leader (thesis §3.10). A transfer not done within an election timeout is
// abandoned and proposals are accepted again. Watch SoftState for the
// outcome.
//
// # Leases
//
// Every heartbeat broadcast is a numbered round; Ready.HeartbeatRound names
// the round a Ready's Messages carry, and the runtime records its monotonic
// clock when it sends them. LeaseRead returns the commit index and the
// newest round a majority answered; the runtime may serve the read locally
// (once applied >= index) if now < sendTime(round) + electionTimeout -
// maxClockDrift. This holds because followers refuse (pre-)votes while
// they hear from a leader, and for an election timeout after a restart;
// heartbeat answers leave only once their term is durable; and a leader
// that started a transfer has no lease for the rest of its term (thesis
// §6.4.1, §3.10). A paused leader's rounds age on the runtime's clock, not
// on its ticks.
//
// # Membership
//
// ProposeConfChange(cc, requestID) on the leader appends an
// EntryConfChange: add a learner, promote a learner to voter, or remove a
// member, one server at a time (thesis §4.1). It refuses a change while an
// earlier one is appended and not yet applied (ErrConfChangePending),
// before the leader has committed an entry of its term (ErrNotReady: the
// fix to single-server changes, thesis §4.1 and Ongaro's 2015 raft-dev
// note), during a transfer (ErrTransferring), promoting a learner more than
// Config.MaxLearnerLagEntries behind (ErrLearnerBehind, §4.2.1), and on
// membership grounds (ErrMemberExists, ErrUnknownMember, ErrLastVoter,
// ErrTooManyMembers); off the leader it returns ErrNotLeader.
//
// Append-time. A configuration takes effect on each server as soon as its
// entry is in that server's log, committed or not, and is undone if a new
// leader truncates the entry (thesis §4.1). We chose this over apply-time
// because (1) it is the rule the thesis proves one-server changes safe
// under: with apply-time, a server that has not yet applied C_new can
// still elect or commit with C_old while others use C_new', two changes
// apart; (2) the leader removing itself falls out naturally: from the
// moment it appends its removal it runs the new configuration, which does
// not contain it, so it never counts itself toward that change's quorum
// (§4.2.2); (3) "the configuration in force at index i" is a pure
// function of the log, which is what a snapshot must record. The cost is
// that the configuration can revert: Ready.ConfState reports every change
// of the configuration in force, both ways, and ConfState() returns it.
//
// Learners receive appends, heartbeats (and snapshots) but never vote,
// never campaign, and never count for the commit quorum, elections,
// ReadIndex confirmation, leases or check-quorum. A leader whose own
// removal commits tells the most up-to-date voter to campaign at once
// (MsgTimeoutNow) and steps down. Other removed members keep getting the
// log from the leader until they acknowledged a heartbeat carrying a
// commit index that covers their removal (or an election timeout of
// silence), so they see SoftState.Removed; the runtime should persist
// that and shut down. Removed is set when the node's commit index passes
// its removal, or when it installs a snapshot without itself while it was
// a member as of its commit index. A node restarted from a snapshot taken
// after its removal is merely not a member (it never campaigns).
//
// A node that is not a voter in the configuration in force never
// campaigns, with one exception: a voter
// whose own removal is appended but not known committed campaigns in the
// new configuration without counting itself (a leader outside C_new,
// §4.2.2); otherwise removing the leader of two voters could deadlock
// when the other voter lacks the entry and cannot win against the longer
// log. Pre-vote keeps such a node from disturbing a healthy cluster.
//
// Messages from nodes outside the configuration are processed (thesis
// §4.1: a server accepts appends from a leader it does not know yet and
// may vote for such a candidate); answers from untracked peers are
// dropped, and only voters' answers count. Disruption by removed servers
// (§4.2.3) is prevented by pre-vote and leader stickiness.
//
// Recovery. The configuration in force at start is Config.Snapshot.Conf
// (when Snapshot is not empty) or Config.Voters, plus every conf-change
// entry of Config.Entries applied in order. Entries apply as "set this
// node's status" (learner, voter, gone), leniently, because the log is
// authoritative: a node joining a running cluster is started with the
// cluster's current voters (its own id absent, so it is not a member and
// never campaigns) and replays the log from its start; every member that
// any entry names ends with the status of the last entry naming it, and
// the base is right for the rest. Config.ID need not be a member.
//
// Snapshots: SnapshotMeta takes the configuration in force at its index
// from confAt (all entries up to an applied index are committed, so it is
// the committed configuration there); Compact folds the history into the
// base (compactConf); an installed snapshot resets it (resetConf).
//
// # Snapshots and log compaction
//
// The application snapshots its state at an applied index i (paper §7,
// thesis §5.1): meta, _ := n.SnapshotMeta(i) gives i's term and the
// configuration in force at i (the snapshot base's plus the conf-change
// entries up to i), the runtime writes the snapshot durably with meta,
// then calls n.Compact(meta): the core drops its entries up to i and may
// from then on send that snapshot.
//
// A follower whose next entry is compacted away gets a MsgSnap in
// Ready.Messages naming the newest compacted meta; the runtime streams the
// snapshot file of that index beside it and calls n.ReportSnapshot(to, ok)
// when the stream ended. Meanwhile the leader sends that follower no
// appends; after a failure it resends once the follower answers a
// heartbeat. n.ReportUnreachable(to) after a failed send puts a pipelining
// follower back to probing.
//
// On the follower the runtime holds the received file aside and Steps the
// MsgSnap. The core refuses (no install) a snapshot at or below its commit
// index (installing it would lose committed entries; it answers as for an
// append at its commit index), and a snapshot whose last entry its log
// already holds with the same term (it keeps its log, takes the commit
// index; Figure 13 rule 6). Otherwise it discards its log and the next
// Ready carries Ready.Snapshot: the runtime makes that file durable and
// resets its log to it BEFORE the Ready's HardState and Entries, and
// restores its state machine from it before applying anything after it.
// The snapshot then counts as committed, applied and durable in the core
// (AckApplied of entries handed out before it is ignored); the
// acknowledgement to the leader is in MessagesAfterPersist, so it leaves
// only once the snapshot is durable. A held file that the next Ready does
// not name was refused or superseded: discard it. The configuration in
// force becomes the snapshot's (Ready.ConfState reports it when it
// changed). A restart gives the snapshot as Config.Snapshot, the entries
// after it as Config.Entries and Config.Applied >= Snapshot.Index; a hard
// state commit index below the snapshot's index is raised to it (a crash
// may fall between the two writes).
//
// The configuration in a snapshot is exact even when Config.Voters was
// the member table's current voters rather than the configuration at the
// log's start: a member's status at the index comes from the last
// conf-change entry naming it up to the index, else from the first one
// after it (an added learner was absent, a promoted one a learner, a
// removed one a member), else from the base. This needs the log to reach
// the point the base describes, which a joiner's (started as a
// non-member with no snapshot) does not: a joiner refuses SnapshotMeta
// (ErrBadSnapshot) until it has installed a snapshot from the leader, so
// a joiner that replays the log from index 1 compacts nothing until it
// restarts as a member or receives a snapshot.
package consensus
