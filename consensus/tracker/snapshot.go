package tracker

// BecomeSnapshot records that the snapshot at index was sent: no append
// goes out until the runtime reports the transfer (SnapshotDone or
// SnapshotFailed) or the follower acknowledges index or later.
func (p *Progress) BecomeSnapshot(index uint64) {
	p.State = StateSnapshot
	p.ProbeSent = false
	p.PendingSnapshot = index
	p.Inflights.Reset()
	// Next stays above Match (the invariant) and, past the snapshot, names
	// the first entry the follower will need once it installed it.
	p.Next = max(p.Match, index) + 1
}

// SnapshotDone: the snapshot stream finished. The follower probably
// installed it, so probe right after it; its acknowledgement (or a
// rejection) of that probe moves on from there.
func (p *Progress) SnapshotDone() {
	pending := p.PendingSnapshot
	p.BecomeProbe()
	p.Next = max(p.Match, pending) + 1
}

// SnapshotFailed: the stream failed. Probe from Match again, but wait for
// a sign of life (a heartbeat answer clears ProbeSent) before sending the
// snapshot again, so a dead follower is not flooded.
func (p *Progress) SnapshotFailed() {
	p.BecomeProbe()
	p.Next = p.Match + 1
	p.ProbeSent = true
}
