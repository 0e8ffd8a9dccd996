package node

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/edgekv/edgekv/consensus/raftmsg"
)

// The membership blob of a snapshot file (storage.SaveSnapshot's opaque
// membership argument): the member table as of the snapshot's index, so
// that a member that installs the snapshot, or a restart after the log
// before it was dropped, knows every member's name and addresses, not only
// the ids the Raft configuration (SnapshotMeta.Conf) holds.
//
// Encoding: JSON, {"version":1,"members":[{"name","id","peer","client",
// "learner"}]}, at most maxMembershipBlobBytes. JSON because it is small
// (one record per member), read once per install or restart, and easy to
// extend: a decoder ignores fields it does not know, and a newer version
// is refused with a clear error rather than misread.
//
// encodeMembershipBlob and decodeMembershipBlob are the only code that
// knows this format; the member table's owner extends snapshotMember.

const (
	membershipBlobVersion = 1
	// maxMembershipBlobBytes bounds a blob read from a file or a peer: a
	// few hundred bytes per member, at most consensus.MaxVoters members
	// plus learners.
	maxMembershipBlobBytes = 1 << 20
	// maxBlobMembers bounds the members of one blob (voters and learners).
	maxBlobMembers = 1024
)

// snapshotMember is one member as a snapshot records it.
type snapshotMember struct {
	Name    string         `json:"name"`
	ID      raftmsg.NodeID `json:"id"`
	Peer    string         `json:"peer"`
	Client  string         `json:"client,omitempty"`
	Learner bool           `json:"learner,omitempty"`
}

type membershipBlob struct {
	Version int              `json:"version"`
	Members []snapshotMember `json:"members"`
}

// errBadMembershipBlob wraps every decoding failure.
var errBadMembershipBlob = errors.New("node: malformed snapshot membership")

// encodeMembershipBlob encodes the member table for a snapshot file.
func encodeMembershipBlob(members []snapshotMember) ([]byte, error) {
	if err := checkBlobMembers(members); err != nil {
		return nil, err
	}
	b, err := json.Marshal(membershipBlob{Version: membershipBlobVersion, Members: members})
	if err != nil {
		return nil, fmt.Errorf("node: encode snapshot membership: %w", err)
	}
	if len(b) > maxMembershipBlobBytes {
		return nil, fmt.Errorf("%w: %d bytes, at most %d", errBadMembershipBlob, len(b), maxMembershipBlobBytes)
	}
	return b, nil
}

// decodeMembershipBlob decodes a blob written by encodeMembershipBlob. An
// empty blob (a snapshot written without one) decodes to no members.
func decodeMembershipBlob(b []byte) ([]snapshotMember, error) {
	if len(b) == 0 {
		return nil, nil
	}
	if len(b) > maxMembershipBlobBytes {
		return nil, fmt.Errorf("%w: %d bytes, at most %d", errBadMembershipBlob, len(b), maxMembershipBlobBytes)
	}
	var blob membershipBlob
	if err := json.Unmarshal(b, &blob); err != nil {
		return nil, fmt.Errorf("%w: %v", errBadMembershipBlob, err)
	}
	if blob.Version != membershipBlobVersion {
		return nil, fmt.Errorf("%w: version %d, this binary reads %d", errBadMembershipBlob, blob.Version, membershipBlobVersion)
	}
	if err := checkBlobMembers(blob.Members); err != nil {
		return nil, err
	}
	return blob.Members, nil
}

func checkBlobMembers(members []snapshotMember) error {
	if len(members) > maxBlobMembers {
		return fmt.Errorf("%w: %d members, at most %d", errBadMembershipBlob, len(members), maxBlobMembers)
	}
	ids := make(map[raftmsg.NodeID]bool, len(members))
	names := make(map[string]bool, len(members))
	for _, m := range members {
		if m.ID == raftmsg.None || m.Name == "" || ids[m.ID] || names[m.Name] {
			return fmt.Errorf("%w: member %q (id %016x) is incomplete or repeated", errBadMembershipBlob, m.Name, uint64(m.ID))
		}
		ids[m.ID], names[m.Name] = true, true
	}
	return nil
}

// snapshotMembersOf converts the runtime's member records.
func snapshotMembersOf(records []MemberRecord) []snapshotMember {
	out := make([]snapshotMember, len(records))
	for i, r := range records {
		out[i] = snapshotMember{Name: r.Name, ID: r.ID, Peer: r.Peer, Client: r.Client, Learner: r.Learner}
	}
	return out
}

// memberRecordsOf converts a snapshot's members to the runtime's records
// (auto-promotion is not recorded: a learner restored from a snapshot is
// promoted by hand, or by the leader that added it, which still knows).
func memberRecordsOf(members []snapshotMember) []MemberRecord {
	out := make([]MemberRecord, len(members))
	for i, m := range members {
		out[i] = MemberRecord{Name: m.Name, ID: m.ID, Peer: m.Peer, Client: m.Client, Learner: m.Learner}
	}
	return out
}
