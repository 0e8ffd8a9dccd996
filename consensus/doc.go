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
//	    // 2. Persist, in Seq order: if !rd.HardState.IsEmpty() write it;
//	    //    write rd.Entries, where the first entry replaces the entry at
//	    //    its index and everything after it; fsync.
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
// # Not yet
//
// Snapshots with log compaction, and membership changes (the rest of
// issue 3) are not implemented: Step returns ErrUnsupported
// for MsgSnap, and the log is kept whole in memory since Config.Snapshot.
package consensus
