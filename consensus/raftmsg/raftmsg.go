// Package raftmsg defines the plain value types that cross the boundary of
// the Raft core: log entries, the hard state that must be persisted, the
// messages nodes exchange, snapshot metadata and membership.
//
// It is a leaf package so that the core (consensus), the peer protocol
// (wire) and the write-ahead log (storage) agree on one vocabulary without
// importing each other. It must never import anything but the standard
// library's pure packages, never hold behaviour beyond small accessors, and
// never use pointers or interfaces in messages: every type here is a value
// that can be copied, compared in tests and encoded field by field.
//
// Adding a field is a protocol and WAL change: the wire and storage
// encoders have round-trip tests that fill every field by reflection and
// fail when a field is not carried.
package raftmsg

// NodeID is a member id: random, chosen when a data dir is created, never
// reused (SPEC §1). Zero means "none" (no vote, no leader).
type NodeID uint64

// None is the zero NodeID: no leader known, no vote cast.
const None NodeID = 0

// EntryType says how the runtime must interpret an entry's Data.
type EntryType uint8

const (
	// EntryNormal carries an application command (opaque to the core).
	EntryNormal EntryType = iota
	// EntryNoop is appended by every new leader at the start of its term so
	// that it can commit entries from earlier terms (Raft paper §5.4.2, §8).
	EntryNoop
	// EntryConfChange carries an encoded ConfChange: membership changes one
	// server at a time (Raft thesis §4.1).
	EntryConfChange
)

func (t EntryType) String() string {
	switch t {
	case EntryNormal:
		return "Normal"
	case EntryNoop:
		return "Noop"
	case EntryConfChange:
		return "ConfChange"
	default:
		return "EntryType(?)"
	}
}

// Entry is one record of the replicated log.
type Entry struct {
	Term  uint64
	Index uint64
	Type  EntryType
	// RequestID is the proposer's opaque id, returned with the committed
	// entry so the runtime can answer the right client. Zero means none.
	RequestID uint64
	// Origin is the member whose runtime proposed the entry (for a
	// proposal forwarded to the leader, the forwarding follower): every
	// member applies every entry, and only the origin may answer the
	// client waiting on RequestID. None when unknown.
	Origin NodeID
	// Data is opaque to the core. For EntryConfChange it holds an encoded
	// ConfChange. Decoders may point it into a pooled buffer: whoever keeps
	// an Entry past the buffer's release must copy Data.
	Data []byte
}

// PayloadBytes is the size counted against byte limits (in-flight windows,
// batch bounds): the data plus a fixed per-entry overhead, so that empty
// entries still cost something.
func (e *Entry) PayloadBytes() uint64 { return uint64(len(e.Data)) + EntryOverheadBytes }

// EntryOverheadBytes approximates the encoded header of one entry.
const EntryOverheadBytes = 32

// HardState is the state that must be durable before any message that
// depends on it leaves the node (Raft paper Figure 2, "Persistent state on
// all servers"; commit is persisted too so a restart can re-apply quickly).
type HardState struct {
	Term   uint64
	Vote   NodeID
	Commit uint64
}

// IsEmpty reports whether nothing has been recorded yet.
func (h HardState) IsEmpty() bool { return h == HardState{} }

// MessageType names a message of the Raft protocol.
type MessageType uint8

const (
	MsgInvalid MessageType = iota
	// MsgPreVote and MsgPreVoteResp: the pre-vote round (thesis §9.6). Term
	// is the term the sender would campaign in; no state changes on receipt.
	MsgPreVote
	MsgPreVoteResp
	// MsgVote and MsgVoteResp: RequestVote (paper §5.2). Index and LogTerm
	// describe the candidate's last entry for the up-to-date check (§5.4.1).
	MsgVote
	MsgVoteResp
	// MsgApp: AppendEntries (paper §5.3). Index/LogTerm are the entry
	// preceding Entries, Commit the leader's commit index.
	MsgApp
	// MsgAppResp: Index is the highest index the follower now matches (when
	// accepted, after its fsync), or the rejected Index; on reject RejectHint
	// and LogTerm carry the fast-backtracking hint (paper §5.3, last
	// paragraphs): the follower's last index at or below the probe whose
	// term is <= LogTerm.
	MsgAppResp
	// MsgHeartbeat and MsgHeartbeatResp: leader liveness and commit
	// propagation; Context echoes a read-index round (thesis §6.4).
	MsgHeartbeat
	MsgHeartbeatResp
	// MsgSnap: InstallSnapshot (paper §7). Snapshot describes it; the data
	// travels beside the message (the transport streams it in chunks).
	MsgSnap
	// MsgProp: a proposal forwarded from a follower to the leader.
	MsgProp
	// MsgPropResp: the leader's refusal of a forwarded proposal (Reject and
	// RejectReason set), so the follower can answer its client at once.
	MsgPropResp
	// MsgReadIndex and MsgReadIndexResp: a follower asks the leader for a
	// read index (thesis §6.4); Context identifies the request, Index is the
	// answer, Reject set when the leader cannot serve it.
	MsgReadIndex
	MsgReadIndexResp
	// MsgTimeoutNow: leadership transfer, the target campaigns at once
	// ignoring its election timer and leader stickiness (thesis §3.10).
	MsgTimeoutNow
	// MsgTransferLeader: a request (local or forwarded) to move leadership
	// to the node named in Hint.
	MsgTransferLeader

	msgTypeCount // keep last: decoders reject types at or beyond it
)

// NumMessageTypes is one past the highest valid MessageType.
const NumMessageTypes = msgTypeCount

var messageTypeNames = [...]string{
	MsgInvalid:        "MsgInvalid",
	MsgPreVote:        "MsgPreVote",
	MsgPreVoteResp:    "MsgPreVoteResp",
	MsgVote:           "MsgVote",
	MsgVoteResp:       "MsgVoteResp",
	MsgApp:            "MsgApp",
	MsgAppResp:        "MsgAppResp",
	MsgHeartbeat:      "MsgHeartbeat",
	MsgHeartbeatResp:  "MsgHeartbeatResp",
	MsgSnap:           "MsgSnap",
	MsgProp:           "MsgProp",
	MsgPropResp:       "MsgPropResp",
	MsgReadIndex:      "MsgReadIndex",
	MsgReadIndexResp:  "MsgReadIndexResp",
	MsgTimeoutNow:     "MsgTimeoutNow",
	MsgTransferLeader: "MsgTransferLeader",
}

func (t MessageType) String() string {
	if int(t) < len(messageTypeNames) {
		return messageTypeNames[t]
	}
	return "MessageType(?)"
}

// Valid reports whether t is a known message type.
func (t MessageType) Valid() bool { return t > MsgInvalid && t < msgTypeCount }

// RejectReason says why a proposal or read was refused without being
// appended anywhere, so the runtime can pick the client's status.
type RejectReason uint8

const (
	RejectNone RejectReason = iota
	// RejectNoLeader: no leader is known (client gets 503).
	RejectNoLeader
	// RejectNotQuorum: the leader has not heard from a quorum recently.
	RejectNotQuorum
	// RejectTransferring: a leadership transfer is in progress.
	RejectTransferring
	// RejectOverloaded: the leader's queues are full (client gets 429).
	RejectOverloaded
	// RejectNotReady: a new leader has not committed its term's no-op yet
	// (reads only, thesis §6.4).
	RejectNotReady
	rejectReasonCount
)

// Valid reports whether r is a known reason.
func (r RejectReason) Valid() bool { return r < rejectReasonCount }

// Message is one Raft protocol message. Fields unused by a type are zero.
type Message struct {
	Type MessageType
	From NodeID
	To   NodeID
	Term uint64
	// LogTerm and Index: see each message type above.
	LogTerm uint64
	Index   uint64
	Commit  uint64
	Entries []Entry
	Reject  bool
	// RejectHint: fast-backtracking hint in a rejected MsgAppResp.
	RejectHint uint64
	// RejectReason: why a MsgPropResp or MsgReadIndexResp was refused.
	RejectReason RejectReason
	// Context: opaque id echoed in responses (read-index rounds, requests).
	Context uint64
	// Hint: a NodeID named by the message (transfer target, known leader).
	Hint NodeID
	// Snapshot: metadata of the snapshot carried by MsgSnap.
	Snapshot SnapshotMeta
}

// SnapshotMeta describes a snapshot: the state after applying every entry
// up to Index (of Term), and the membership in force at Index (thesis
// §5.1: the configuration must travel with the snapshot).
type SnapshotMeta struct {
	Index uint64
	Term  uint64
	Conf  ConfState
}

// IsEmpty reports whether the meta describes no snapshot.
func (s SnapshotMeta) IsEmpty() bool { return s.Index == 0 }

// ConfState is a cluster membership: voters count for elections and
// commit quorums, learners receive the log but never vote.
type ConfState struct {
	Voters   []NodeID
	Learners []NodeID
}

// ConfChangeType names a one-server membership change (thesis §4.1).
type ConfChangeType uint8

const (
	ConfChangeAddLearner ConfChangeType = iota + 1
	ConfChangePromote
	ConfChangeRemove
	confChangeTypeCount
)

// Valid reports whether t is a known change.
func (t ConfChangeType) Valid() bool { return t > 0 && t < confChangeTypeCount }

// ConfChange is the content of an EntryConfChange entry. Context is opaque
// to the core (the runtime stores the member's name and addresses there).
type ConfChange struct {
	Type    ConfChangeType
	NodeID  NodeID
	Context []byte
}
