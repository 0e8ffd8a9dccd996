package kv_test

import (
	"fmt"
	"time"

	"github.com/edgekv/edgekv/consensus/raftmsg"
	"github.com/edgekv/edgekv/kv"
)

// Example shows the path of a write: the proposer encodes a command, the
// leader stamps its clock, the apply loop applies the committed entry, a
// reader reads the published view.
func Example() {
	m, err := kv.NewMachine(kv.Config{QuotaBytes: 1 << 30, IdempotencyTTL: 10 * time.Minute})
	if err != nil {
		panic(err)
	}
	// Proposer (HTTP layer): PUT /v1/kv/greeting with an Idempotency-Key.
	cmd := kv.NewPut([]byte("greeting"), []byte("hello"), kv.CondNone, 0)
	cmd.IdempotencyKey = []byte("client-req-1")
	cmd.Fingerprint = cmd.ComputeFingerprint()
	data, err := kv.AppendCommand(nil, &cmd, m.Config().Limits)
	if err != nil {
		panic(err) // errors.Is(err, kv.ErrTooLarge) → 413, else 400
	}
	// Leader, just before appending to its log.
	if err := kv.StampTimestamp(data, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()); err != nil {
		panic(err)
	}
	// Apply loop: committed entries in index order.
	ents := []raftmsg.Entry{
		{Term: 1, Index: 1, Type: raftmsg.EntryNoop},
		{Term: 1, Index: 2, Type: raftmsg.EntryNormal, RequestID: 77, Data: data},
		{Term: 2, Index: 3, Type: raftmsg.EntryNormal, RequestID: 78, Data: data}, // a retry
	}
	results, err := m.ApplyEntries(ents, nil)
	if err != nil {
		panic(err)
	}
	for _, r := range results {
		fmt.Printf("request %d: %v revision %d replayed %v\n", r.RequestID, r.Status, r.Revision, r.Replayed)
	}
	// Any goroutine: read the published view.
	v := m.View()
	value, rev, found := v.Get("greeting")
	fmt.Printf("%s etag %d found %v; store revision %d applied %d\n", value, rev, found, v.Revision(), v.AppliedIndex())
	// Output:
	// request 77: ok revision 1 replayed false
	// request 78: ok revision 1 replayed true
	// hello etag 1 found true; store revision 1 applied 3
}
