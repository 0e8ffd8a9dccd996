package node

import "time"

// Leader-lease reads (Raft thesis §6.4.1). The core names heartbeat rounds
// (Ready.HeartbeatRound) and tells, through LeaseRead, the newest round a
// majority answered; whether the lease still holds is decided here, on the
// monotonic clock, because ticks cannot measure it: a paused or starved
// process loses ticks, never clock time.
//
// Why the lease lasts leaseDuration after a round was SENT: a follower that
// heard from the leader refuses (pre-)votes until ElectionTicks of its own
// ticks have passed since (leader stickiness, consensus inLease). Its first
// tick may fire right after the heartbeat arrived, so those ticks span at
// least (ElectionTicks-1) tick intervals of its clock, and no heartbeat
// arrives before it was sent. Clocks of two hosts may run at different
// rates; we assume they differ by less than maxClockDriftRatio (the
// "bounded clock drift" lease reads rely on, README) and shorten the lease
// by that much. The send time is taken before the heartbeats are handed to
// the transport, which only makes the lease shorter.
const (
	maxClockDriftRatio = 0.10
	// leaseRoundsKept: send times of the newest rounds kept; LeaseRead
	// names a round a majority answered, which is one of the newest few
	// unless answers are very late, and then the lease is gone anyway.
	leaseRoundsKept = 64
)

// leaseDuration is how long after a round's send time its lease holds;
// zero disables lease reads (they fall back to ReadIndex).
func leaseDuration(tick time.Duration, electionTicks int) time.Duration {
	if electionTicks < 2 {
		return 0
	}
	return time.Duration(float64(time.Duration(electionTicks-1)*tick) * (1 - maxClockDriftRatio))
}

// leaseHolds reports whether a lease confirmed by a round sent at sentAt
// (monotonic nanoseconds) still holds at now.
func leaseHolds(sentAt, now int64, lease time.Duration) bool {
	return lease > 0 && now >= sentAt && now-sentAt < int64(lease)
}

// roundTimes remembers when the newest heartbeat rounds were sent. Owned by
// the raft loop.
type roundTimes struct {
	rounds [leaseRoundsKept]uint64
	sentAt [leaseRoundsKept]int64
}

func (r *roundTimes) note(round uint64, sentAt int64) {
	i := round % leaseRoundsKept
	r.rounds[i], r.sentAt[i] = round, sentAt
}

func (r *roundTimes) lookup(round uint64) (int64, bool) {
	i := round % leaseRoundsKept
	if round == 0 || r.rounds[i] != round {
		return 0, false
	}
	return r.sentAt[i], true
}
