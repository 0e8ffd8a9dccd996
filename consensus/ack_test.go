package consensus

import (
	"testing"

	"github.com/edgekv/edgekv/consensus/raftmsg"
)

// Paper Figure 2 ("respond after updating stable storage"): an append
// acknowledgement may leave only if it is true of the durable log when it
// leaves. A follower that acknowledged entries 3-5 to a leader of term 2
// and, before that Ready was handed out, had them replaced by a leader of
// term 3 must not send the old acknowledgement after persisting the
// truncated log (the stale leader could count it toward a commit).
func TestTruncationWithdrawsPendingAcks(t *testing.T) {
	n := recovered(t, 2, []raftmsg.NodeID{1, 2, 3}, 2, 1, 1)
	if err := n.Step(raftmsg.Message{Type: raftmsg.MsgApp, From: 1, To: 2, Term: 2, Index: 2, LogTerm: 1,
		Entries: []raftmsg.Entry{{Index: 3, Term: 2}, {Index: 4, Term: 2}, {Index: 5, Term: 2}}}); err != nil {
		t.Fatal(err)
	}
	if err := n.Step(raftmsg.Message{Type: raftmsg.MsgApp, From: 3, To: 2, Term: 3, Index: 2, LogTerm: 1,
		Entries: []raftmsg.Entry{{Index: 3, Term: 3}}}); err != nil {
		t.Fatal(err)
	}
	rd := n.Ready()
	if n.LastIndex() != 3 {
		t.Fatalf("log ends at %d", n.LastIndex())
	}
	for _, m := range msgsOfType(rd.MessagesAfterPersist, raftmsg.MsgAppResp) {
		if !m.Reject && m.To == 1 && m.Index > 2 {
			t.Fatalf("acknowledges %d to the old leader after the truncation: %+v", m.Index, m)
		}
	}
	if acks := msgsOfType(rd.MessagesAfterPersist, raftmsg.MsgAppResp); len(acks) != 1 || acks[0].To != 3 || acks[0].Index != 3 {
		t.Fatalf("acknowledgements %+v, want one of index 3 to the new leader", acks)
	}
}
