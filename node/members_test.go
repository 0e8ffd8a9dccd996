package node

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/edgekv/edgekv/consensus/raftmsg"
	"github.com/edgekv/edgekv/kv"
)

func TestMemberRecordRoundTrip(t *testing.T) {
	for _, r := range []MemberRecord{
		{Name: "n1"},
		{Name: "n4", Peer: "10.0.0.4:7380", Client: "10.0.0.4:7379", AutoPromote: true},
		{Name: strings.Repeat("x", maxMemberFieldBytes), Peer: strings.Repeat("p", maxMemberFieldBytes), Client: strings.Repeat("c", maxMemberFieldBytes)},
	} {
		b, err := appendMemberRecord(nil, r)
		if err != nil {
			t.Fatal(err)
		}
		got, err := decodeMemberRecord(b)
		if err != nil || got != r {
			t.Fatalf("round trip of %+v: %+v, %v", r, got, err)
		}
		r.ID = 0xabcdef
		a, err := appendAnnounce(nil, r)
		if err != nil {
			t.Fatal(err)
		}
		if !isAnnounce(a) {
			t.Fatal("announcement not recognized")
		}
		got, err = decodeAnnounce(a)
		if err != nil || got != r {
			t.Fatalf("announce round trip of %+v: %+v, %v", r, got, err)
		}
	}
	if _, err := appendMemberRecord(nil, MemberRecord{Name: strings.Repeat("x", maxMemberFieldBytes+1)}); !errors.Is(err, ErrBadMemberRecord) {
		t.Fatalf("over-long name: %v", err)
	}
	if _, err := appendMemberRecord(nil, MemberRecord{}); !errors.Is(err, ErrBadMemberRecord) {
		t.Fatalf("empty name: %v", err)
	}
	if _, err := appendAnnounce(nil, MemberRecord{Name: "n1"}); !errors.Is(err, ErrBadMemberRecord) {
		t.Fatalf("announcement without id: %v", err)
	}
}

func TestMemberRecordRefusesDamage(t *testing.T) {
	good, _ := appendMemberRecord(nil, MemberRecord{Name: "n1", Peer: "a:1", Client: "b:2"})
	for i := range good {
		if _, err := decodeMemberRecord(good[:i]); !errors.Is(err, ErrBadMemberRecord) {
			t.Errorf("truncated to %d bytes: %v", i, err)
		}
	}
	for _, b := range [][]byte{
		append(bytes.Clone(good), 0),         // trailing byte
		append([]byte{2}, good[1:]...),       // version
		append([]byte{1, 0x80}, good[2:]...), // unknown flag
		{1, 0, 0, 0, 0},                      // empty name
	} {
		if _, err := decodeMemberRecord(b); !errors.Is(err, ErrBadMemberRecord) {
			t.Errorf("%x: %v", b, err)
		}
	}
}

// TestAnnouncementIsNoKVCommand: the state machine must refuse an
// announcement without changing anything, or members would disagree on
// the store (the applier relies on it, members.go).
func TestAnnouncementIsNoKVCommand(t *testing.T) {
	if kv.CommandVersion == announceMagic[0] {
		t.Fatalf("kv.CommandVersion %#x collides with the announcement magic", kv.CommandVersion)
	}
	m, err := kv.NewMachine(kv.Config{QuotaBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	a, _ := appendAnnounce(nil, MemberRecord{ID: 7, Name: "n1", Client: "127.0.0.1:1"})
	res, err := m.ApplyEntries([]raftmsg.Entry{{Index: 1, Term: 1, Data: a}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 1 || res[0].Status != kv.StatusInvalid || m.View().Revision() != 0 || m.View().Len() != 0 {
		t.Fatalf("announcement applied as a command: %+v, revision %d", res, m.View().Revision())
	}
	if err := kv.StampTimestamp(a, 1); err == nil {
		t.Fatal("the leader's timestamp stamping would rewrite an announcement")
	}
}

func TestMemberTableApply(t *testing.T) {
	tab := newMemberTable([]MemberRecord{{Name: "n1", ID: 1, Peer: "p1"}, {Name: "n2", ID: 2, Peer: "p2"}}, 0)
	ctx, _ := appendMemberRecord(nil, MemberRecord{Name: "n4", Peer: "p4", Client: "c4", AutoPromote: true})
	tab2, err := tab.applyConfChange(raftmsg.ConfChange{Type: raftmsg.ConfChangeAddLearner, NodeID: 4, Context: ctx}, 5)
	if err != nil {
		t.Fatal(err)
	}
	if r, ok := tab2.byName("n4"); !ok || !r.Learner || !r.AutoPromote || r.ID != 4 || r.Client != "c4" || tab2.applied != 5 {
		t.Fatalf("after add: %+v %v", r, ok)
	}
	if len(tab.members) != 2 {
		t.Fatal("the old table changed")
	}
	a, _ := appendAnnounce(nil, MemberRecord{ID: 1, Name: "n1", Peer: "p1", Client: "c1"})
	ar, err := decodeAnnounce(a)
	if err != nil {
		t.Fatal(err)
	}
	tab3 := tab2.applyAnnounce(ar, 6)
	if r, _ := tab3.byID(1); r.Client != "c1" {
		t.Fatalf("announce: %+v", r)
	}
	// An announcement under another name (a wiped member's id reused
	// never happens, but a stale one must not rename) changes nothing.
	if r, _ := tab3.applyAnnounce(MemberRecord{ID: 1, Name: "zz", Client: "x"}, 7).byID(1); r.Name != "n1" || r.Client != "c1" {
		t.Fatalf("foreign announce applied: %+v", r)
	}
	promoted, _ := appendMemberRecord(nil, MemberRecord{Name: "n4", Peer: "p4"})
	tab4, err := tab3.applyConfChange(raftmsg.ConfChange{Type: raftmsg.ConfChangePromote, NodeID: 4, Context: promoted}, 8)
	if err != nil {
		t.Fatal(err)
	}
	if r, _ := tab4.byID(4); r.Learner || r.AutoPromote || r.Client != "c4" {
		t.Fatalf("promote lost the client address or kept the learner bit: %+v", r)
	}
	if got := tab4.voters(); len(got) != 3 {
		t.Fatalf("voters %v", got)
	}
	tab5, _ := tab4.applyConfChange(raftmsg.ConfChange{Type: raftmsg.ConfChangeRemove, NodeID: 2, Context: nil}, 9)
	if _, ok := tab5.byID(2); ok || len(tab5.members) != 2 {
		t.Fatalf("remove: %+v", tab5.members)
	}
	// Replaying every entry over the newest table gives the same table.
	replay := tab5
	replay, _ = replay.applyConfChange(raftmsg.ConfChange{Type: raftmsg.ConfChangeAddLearner, NodeID: 4, Context: ctx}, 5)
	replay = replay.applyAnnounce(ar, 6)
	replay, _ = replay.applyConfChange(raftmsg.ConfChange{Type: raftmsg.ConfChangePromote, NodeID: 4, Context: promoted}, 8)
	replay, _ = replay.applyConfChange(raftmsg.ConfChange{Type: raftmsg.ConfChangeRemove, NodeID: 2}, 9)
	if len(replay.members) != len(tab5.members) {
		t.Fatalf("replay %+v, want %+v", replay.members, tab5.members)
	}
	for i := range replay.members {
		if replay.members[i] != tab5.members[i] {
			t.Fatalf("replay %+v, want %+v", replay.members, tab5.members)
		}
	}
	if err := tab5.check(); err != nil {
		t.Fatal(err)
	}
}

// FuzzMemberRecord: decoding never panics, and what decodes re-encodes
// to the same bytes.
func FuzzMemberRecord(f *testing.F) {
	good, _ := appendMemberRecord(nil, MemberRecord{Name: "n4", Peer: "10.0.0.4:7380", Client: "10.0.0.4:7379", AutoPromote: true})
	ann, _ := appendAnnounce(nil, MemberRecord{ID: 9, Name: "n1", Peer: "p", Client: "c"})
	f.Add(good)
	f.Add(ann)
	f.Add([]byte{})
	f.Add([]byte{1, 0, 255})
	f.Add([]byte{0xFF, 'M', 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1, 'a', 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		if r, err := decodeMemberRecord(b); err == nil {
			out, err := appendMemberRecord(nil, r)
			if err != nil || !bytes.Equal(out, b) {
				t.Fatalf("%x decoded to %+v, re-encoded %x (%v)", b, r, out, err)
			}
		} else if !errors.Is(err, ErrBadMemberRecord) {
			t.Fatalf("unwrapped error %v", err)
		}
		if r, err := decodeAnnounce(b); err == nil {
			out, err := appendAnnounce(nil, r)
			if err != nil || !bytes.Equal(out, b) {
				t.Fatalf("announcement %x decoded to %+v, re-encoded %x (%v)", b, r, out, err)
			}
		}
	})
}

// FuzzJoinAnswer: a join answer from the network never panics the
// joining node, and one it accepts lists it under its name and id.
func FuzzJoinAnswer(f *testing.F) {
	f.Add([]byte(`{"member":{"name":"n4","id":"04","peer":"p","client":"c","voter":false},"members":[{"name":"n1","id":"01","peer":"p1","client":"c1","voter":true},{"name":"n4","id":"04","peer":"p","client":"c","voter":false}]}`))
	f.Add([]byte(`{"members":[{"name":"n4","id":"zz"}]}`))
	f.Add([]byte(`{"members":[{"name":"n4","id":"04","voter":false}]}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, b []byte) {
		members, err := joinedMembers(b, 4, "n4")
		if err != nil {
			if !errors.Is(err, ErrJoin) {
				t.Fatalf("unwrapped error %v", err)
			}
			return
		}
		tab := newMemberTable(members, 0)
		if err := tab.check(); err != nil {
			t.Fatalf("accepted a bad table: %v", err)
		}
		if me, ok := tab.byID(4); !ok || me.Name != "n4" {
			t.Fatalf("accepted a table without this node: %+v", members)
		}
	})
}
