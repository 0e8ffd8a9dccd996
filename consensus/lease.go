package consensus

// Leader leases (thesis §6.4.1). A follower that heard from its leader
// refuses pre-votes and votes for an election timeout (leader stickiness,
// inLease), and a restarted node refuses them for its first election
// timeout. So once a majority has answered a heartbeat round, no other
// leader can be elected until an election timeout after that round was
// SENT. Ticks cannot measure that safely (a paused process loses ticks),
// so the core only names rounds: Ready.HeartbeatRound says which round a
// Ready's messages carry (the runtime notes its monotonic clock when it
// sends them), and LeaseRead returns the newest round a majority has
// answered. The runtime serves the read if now < sendTime(round) +
// electionTimeout - maxClockDrift.

// LeaseRead returns the index a lease read must wait for (serve it once
// applied >= index) and the heartbeat round whose send time starts the
// lease. It refuses when this node is not the leader (ErrNoLeader), has
// not committed an entry of its term (ErrNotReady), has started a
// leadership transfer in this term (ErrTransferring: the transferee's
// forced election ignores stickiness, so the lease is gone for the rest of
// the term), or no round has been answered by a majority yet
// (ErrNotQuorum).
func (n *Node) LeaseRead() (index, round uint64, err error) {
	switch {
	case n.role != RoleLeader:
		return 0, 0, ErrNoLeader
	case n.transferredInTerm:
		return 0, 0, ErrTransferring
	}
	if t, _ := n.log.term(n.log.committed); t != n.term {
		return 0, 0, ErrNotReady
	}
	if n.confirmedRound <= n.termFirstRound {
		return 0, 0, ErrNotQuorum
	}
	return n.log.committed, n.confirmedRound, nil
}

// startupQuiet reports whether this node restarted less than an election
// timeout ago: before the crash it may have answered a leader's heartbeat
// (answers leave only once the term they carry is durable, so such a node
// restarts with a hard state), and that leader may hold a lease on the
// strength of it. A node bootstrapping with no hard state answered nobody.
func (n *Node) startupQuiet() bool {
	return n.restarted && n.ticks < uint64(n.cfg.ElectionTicks)
}
