package node

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/edgekv/edgekv/consensus/raftmsg"
)

// The member table: every member's name, id, peer and client address and
// whether it votes. It is replicated state, changed only by log entries
// applied in order by the applier:
//
//   - EntryConfChange: the ConfChange's Context holds the subject's
//     record (encoded below); AddLearner sets it as a learner, Promote
//     makes it a voter, Remove deletes it.
//   - EntryNormal announcing a member's own addresses (appendAnnounce): a
//     member bootstrapped from --initial-cluster knows only the peer
//     addresses of the others, so each proposes its own client address
//     once it knows a leader. The data starts with announceMagic, which
//     is never a kv command version: the state machine refuses the entry
//     (StatusInvalid, nothing changes, the revision does not move) and the
//     applier updates the table.
//
// Applying is "set this member's record", so replaying entries over a
// newer table (a restart replays the log from its start) ends in the same
// table as applying them once.
//
// Encoded member record (Context of a ConfChange), all lengths in bytes:
//
//	+--------+----------+-------------+------+-------------+------+---------------+--------+
//	| ver u8 | flags u8 | nameLen u8  | name | peerLen u8  | peer | clientLen u8  | client |
//	+--------+----------+-------------+------+-------------+------+---------------+--------+
//	flags: bit 0 auto-promote (the leader promotes the learner once it has caught up)
//
// Encoded announcement (Data of an EntryNormal):
//
//	+----------------+--------------+-----------------+
//	| 0xFF 0x4D  (2) | id u64 (LE)  | member record   |
//	+----------------+--------------+-----------------+

// MemberRecord is one member of the table.
type MemberRecord struct {
	Name string         `json:"name"`
	ID   raftmsg.NodeID `json:"id"`
	Peer string         `json:"peer"`
	// Client is the advertised HTTP address; empty until announced.
	Client string `json:"client,omitempty"`
	// Learner: receives the log but does not vote (yet).
	Learner bool `json:"learner,omitempty"`
	// AutoPromote: the leader promotes this learner once it has caught up
	// (members that joined with --join).
	AutoPromote bool `json:"auto_promote,omitempty"`
}

const (
	memberRecordVersion = 1
	// maxMemberFieldBytes bounds a name or an address (one length byte).
	maxMemberFieldBytes = 255
	flagAutoPromote     = 1 << 0
	memberFlagsKnown    = flagAutoPromote
)

// announceMagic starts an announcement entry; kv.CommandVersion is never
// 0xFF (a test checks it), so the state machine refuses the entry.
var announceMagic = [2]byte{0xFF, 'M'}

// ErrBadMemberRecord wraps every decoding failure of a record or an
// announcement.
var ErrBadMemberRecord = errors.New("node: malformed member record")

// appendMemberRecord appends r's encoding (without its id and learner
// bit: the conf change carries those) to dst.
func appendMemberRecord(dst []byte, r MemberRecord) ([]byte, error) {
	for _, f := range [...]struct{ what, v string }{{"name", r.Name}, {"peer address", r.Peer}, {"client address", r.Client}} {
		if len(f.v) > maxMemberFieldBytes {
			return dst, fmt.Errorf("%w: %s of %d bytes, at most %d", ErrBadMemberRecord, f.what, len(f.v), maxMemberFieldBytes)
		}
	}
	if r.Name == "" {
		return dst, fmt.Errorf("%w: empty name", ErrBadMemberRecord)
	}
	var flags byte
	if r.AutoPromote {
		flags |= flagAutoPromote
	}
	dst = append(dst, memberRecordVersion, flags)
	for _, f := range [...]string{r.Name, r.Peer, r.Client} {
		dst = append(dst, byte(len(f)))
		dst = append(dst, f...)
	}
	return dst, nil
}

// decodeMemberRecord parses a record encoded by appendMemberRecord; the
// strings are copies.
func decodeMemberRecord(b []byte) (MemberRecord, error) {
	if len(b) < 2 {
		return MemberRecord{}, fmt.Errorf("%w: %d bytes", ErrBadMemberRecord, len(b))
	}
	if b[0] != memberRecordVersion {
		return MemberRecord{}, fmt.Errorf("%w: version %d", ErrBadMemberRecord, b[0])
	}
	if b[1]&^memberFlagsKnown != 0 {
		return MemberRecord{}, fmt.Errorf("%w: unknown flags %#x", ErrBadMemberRecord, b[1])
	}
	r := MemberRecord{AutoPromote: b[1]&flagAutoPromote != 0}
	rest := b[2:]
	var fields [3]string
	for i := range fields {
		if len(rest) < 1 || int(rest[0]) > len(rest)-1 {
			return MemberRecord{}, fmt.Errorf("%w: field %d truncated", ErrBadMemberRecord, i)
		}
		n := int(rest[0])
		fields[i] = string(rest[1 : 1+n])
		rest = rest[1+n:]
	}
	if len(rest) != 0 {
		return MemberRecord{}, fmt.Errorf("%w: %d trailing bytes", ErrBadMemberRecord, len(rest))
	}
	r.Name, r.Peer, r.Client = fields[0], fields[1], fields[2]
	if r.Name == "" {
		return MemberRecord{}, fmt.Errorf("%w: empty name", ErrBadMemberRecord)
	}
	return r, nil
}

// appendAnnounce appends the announcement of r (its id included).
func appendAnnounce(dst []byte, r MemberRecord) ([]byte, error) {
	if r.ID == raftmsg.None {
		return dst, fmt.Errorf("%w: announcement of member id 0", ErrBadMemberRecord)
	}
	dst = append(dst, announceMagic[:]...)
	dst = binary.LittleEndian.AppendUint64(dst, uint64(r.ID))
	return appendMemberRecord(dst, r)
}

// isAnnounce reports whether an EntryNormal's data is an announcement.
func isAnnounce(data []byte) bool {
	return len(data) >= 2 && data[0] == announceMagic[0] && data[1] == announceMagic[1]
}

func decodeAnnounce(data []byte) (MemberRecord, error) {
	if !isAnnounce(data) || len(data) < 2+8 {
		return MemberRecord{}, fmt.Errorf("%w: not an announcement (%d bytes)", ErrBadMemberRecord, len(data))
	}
	r, err := decodeMemberRecord(data[10:])
	if err != nil {
		return MemberRecord{}, err
	}
	r.ID = raftmsg.NodeID(binary.LittleEndian.Uint64(data[2:10]))
	if r.ID == raftmsg.None {
		return MemberRecord{}, fmt.Errorf("%w: announcement of member id 0", ErrBadMemberRecord)
	}
	return r, nil
}

// memberTable is an immutable set of records sorted by id; changes
// return a new table (copy on write: changes are rare, readers many).
type memberTable struct {
	members []MemberRecord
	// applied is the index of the last entry applied to the table.
	applied uint64
}

func newMemberTable(members []MemberRecord, applied uint64) *memberTable {
	t := &memberTable{members: slices.Clone(members), applied: applied}
	slices.SortFunc(t.members, func(a, b MemberRecord) int { return cmp.Compare(a.ID, b.ID) })
	return t
}

func (t *memberTable) byID(id raftmsg.NodeID) (MemberRecord, bool) {
	i, ok := slices.BinarySearchFunc(t.members, id, func(r MemberRecord, id raftmsg.NodeID) int { return cmp.Compare(r.ID, id) })
	if !ok {
		return MemberRecord{}, false
	}
	return t.members[i], true
}

func (t *memberTable) byName(name string) (MemberRecord, bool) {
	for _, r := range t.members {
		if r.Name == name {
			return r, true
		}
	}
	return MemberRecord{}, false
}

// voters returns the voters' ids, sorted.
func (t *memberTable) voters() []raftmsg.NodeID {
	var out []raftmsg.NodeID
	for _, r := range t.members {
		if !r.Learner {
			out = append(out, r.ID)
		}
	}
	return out
}

// set returns the table with r in place of any record of r.ID.
func (t *memberTable) set(r MemberRecord, index uint64) *memberTable {
	out := t.without(r.ID, index)
	i, _ := slices.BinarySearchFunc(out.members, r.ID, func(m MemberRecord, id raftmsg.NodeID) int { return cmp.Compare(m.ID, id) })
	out.members = slices.Insert(out.members, i, r)
	return out
}

func (t *memberTable) without(id raftmsg.NodeID, index uint64) *memberTable {
	out := &memberTable{applied: max(t.applied, index), members: make([]MemberRecord, 0, len(t.members)+1)}
	for _, r := range t.members {
		if r.ID != id {
			out.members = append(out.members, r)
		}
	}
	return out
}

// applyConfChange returns the table after the conf-change entry at index.
// A record that cannot be decoded keeps what is known of the member (the
// core already changed the configuration; only addresses are missing).
func (t *memberTable) applyConfChange(cc raftmsg.ConfChange, index uint64) (*memberTable, error) {
	old, known := t.byID(cc.NodeID)
	r, err := decodeMemberRecord(cc.Context)
	if err != nil {
		if !known {
			r = MemberRecord{Name: fmt.Sprintf("member-%016x", uint64(cc.NodeID))}
		} else {
			r = old
		}
		err = fmt.Errorf("conf change for %016x at %d: %w", uint64(cc.NodeID), index, err)
	}
	r.ID = cc.NodeID
	if r.Client == "" && known {
		r.Client = old.Client // a record written before the member announced itself
	}
	switch cc.Type {
	case raftmsg.ConfChangeAddLearner:
		r.Learner = true
		return t.set(r, index), err
	case raftmsg.ConfChangePromote:
		r.Learner, r.AutoPromote = false, false
		return t.set(r, index), err
	case raftmsg.ConfChangeRemove:
		return t.without(cc.NodeID, index), err
	}
	return t.without(raftmsg.None, index), fmt.Errorf("conf change type %d at %d: %w", cc.Type, index, ErrBadMemberRecord)
}

// applyAnnounce records a member's announced addresses; an announcement
// of a member that is not in the table (removed since) changes nothing.
func (t *memberTable) applyAnnounce(a MemberRecord, index uint64) *memberTable {
	old, ok := t.byID(a.ID)
	if !ok || old.Name != a.Name {
		return t.without(raftmsg.None, index)
	}
	old.Client = a.Client
	if a.Peer != "" {
		old.Peer = a.Peer
	}
	return t.set(old, index)
}

// check validates a table read from a file.
func (t *memberTable) check() error {
	if len(t.members) == 0 || len(t.members) > 64 {
		return fmt.Errorf("%d members recorded, want 1..64", len(t.members))
	}
	names := map[string]bool{}
	for i, r := range t.members {
		if r.ID == raftmsg.None || r.Name == "" || names[r.Name] || i > 0 && t.members[i-1].ID == r.ID {
			return fmt.Errorf("member record %+v is incomplete or repeated", r)
		}
		if len(r.Name) > maxMemberFieldBytes || len(r.Peer) > maxMemberFieldBytes || len(r.Client) > maxMemberFieldBytes {
			return fmt.Errorf("member record %q: a field over %d bytes", r.Name, maxMemberFieldBytes)
		}
		names[r.Name] = true
	}
	if len(t.voters()) == 0 {
		return errors.New("no voter recorded")
	}
	return nil
}
