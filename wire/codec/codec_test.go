package codec

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/edgekv/edgekv/consensus/raftmsg"
)

// fillRandom sets every field reachable from v (structs, slices, integers,
// bools, byte slices) to a random non-zero value, so that a field the codec
// forgets shows up as a difference after a round trip. It fails the test on
// a kind it does not know, so a new kind of field cannot slip through.
func fillRandom(t testing.TB, r *rand.Rand, v reflect.Value, path string) {
	t.Helper()
	switch v.Kind() {
	case reflect.Struct:
		for i := range v.NumField() {
			fillRandom(t, r, v.Field(i), path+"."+v.Type().Field(i).Name)
		}
	case reflect.Slice:
		n := 1 + r.IntN(4)
		if v.Type().Elem().Kind() == reflect.Uint8 {
			n = 1 + r.IntN(300)
		}
		v.Set(reflect.MakeSlice(v.Type(), n, n))
		for i := range n {
			fillRandom(t, r, v.Index(i), path+"[]")
		}
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		x := r.Uint64()>>(64-v.Type().Bits()) | 1
		switch v.Type() {
		case reflect.TypeFor[raftmsg.MessageType]():
			x = 1 + r.Uint64N(uint64(raftmsg.NumMessageTypes-1))
		case reflect.TypeFor[raftmsg.RejectReason]():
			x = 1 + r.Uint64N(uint64(raftmsg.RejectNotReady))
		case reflect.TypeFor[raftmsg.EntryType]():
			x = r.Uint64N(3)
		}
		v.SetUint(x)
	default:
		t.Fatalf("fillRandom: field %s of kind %s: teach the codec and this test about it", path, v.Kind())
	}
}

// assertNoZeroLeaf proves fillRandom reached every leaf field of a
// message (else the round trip could pass with a field left zero).
func assertNoZeroLeaf(t *testing.T, v reflect.Value, path string) {
	switch v.Kind() {
	case reflect.Struct:
		for i := range v.NumField() {
			assertNoZeroLeaf(t, v.Field(i), path+"."+v.Type().Field(i).Name)
		}
	case reflect.Slice:
		if v.Len() == 0 {
			t.Fatalf("%s is empty after fillRandom", path)
		}
		if v.Type().Elem().Kind() != reflect.Uint8 {
			for i := range v.Len() {
				assertNoZeroLeaf(t, v.Index(i), path+"[]")
			}
		}
	default:
		if v.IsZero() && path != "Message.Entries[].Type" {
			t.Fatalf("%s is zero after fillRandom", path)
		}
	}
}

func randomMessage(t testing.TB, r *rand.Rand) raftmsg.Message {
	var m raftmsg.Message
	fillRandom(t, r, reflect.ValueOf(&m).Elem(), "Message")
	return m
}

func TestMessageRoundTripEveryField(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 200 {
		m := randomMessage(t, r)
		assertNoZeroLeaf(t, reflect.ValueOf(m), "Message")
		var e Encoder
		e.AddMessage(&m)
		if got, want := e.Len(), 4+MessageBytes(&m); got != want {
			t.Fatalf("encoded %d bytes, MessageBytes says %d", got, want)
		}
		var b Batch
		if err := b.Decode(e.Bytes()); err != nil {
			t.Fatal(err)
		}
		if len(b.Messages) != 1 || !reflect.DeepEqual(b.Messages[0], m) {
			t.Fatalf("round trip changed the message:\n got %+v\nwant %+v", b.Messages, m)
		}
	}
}

// TestEveryMessageTypeRoundTrips covers each type with the fields it uses.
func TestEveryMessageTypeRoundTrips(t *testing.T) {
	for typ := raftmsg.MsgInvalid + 1; typ < raftmsg.NumMessageTypes; typ++ {
		m := raftmsg.Message{Type: typ, From: 1, To: 2, Term: 3}
		switch typ {
		case raftmsg.MsgApp, raftmsg.MsgProp:
			m.Entries = []raftmsg.Entry{{Term: 3, Index: 10, Data: []byte("x")}, {Term: 3, Index: 11, Type: raftmsg.EntryNoop}}
		case raftmsg.MsgSnap:
			m.Snapshot = raftmsg.SnapshotMeta{Index: 9, Term: 2, Conf: raftmsg.ConfState{Voters: []raftmsg.NodeID{1, 2}}}
		case raftmsg.MsgPropResp, raftmsg.MsgReadIndexResp:
			m.Reject, m.RejectReason = true, raftmsg.RejectOverloaded
		}
		var e Encoder
		e.AddMessage(&m)
		var b Batch
		if err := b.Decode(e.Bytes()); err != nil {
			t.Fatalf("%s: %v", typ, err)
		}
		if !reflect.DeepEqual(b.Messages, []raftmsg.Message{m}) {
			t.Fatalf("%s: got %+v want %+v", typ, b.Messages, m)
		}
	}
}

func TestMixedBatchRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	var e Encoder
	e.Reset()
	var msgs []raftmsg.Message
	fwd := []ForwardRequest{{Op: ForwardPropose, RequestID: 7, Payload: []byte("put a=b")}, {Op: ForwardReadIndex, RequestID: 8}}
	outs := []Outcome{{RequestID: 7, Status: StatusCommitted, Revision: 99}, {RequestID: 9, Status: StatusConditionFailed, Revision: 5, Body: []byte("[0,2]")}}
	for i := range 10 {
		m := randomMessage(t, r)
		msgs = append(msgs, m)
		e.AddMessage(&m)
		if i < len(fwd) {
			e.AddForwardRequest(&fwd[i])
			e.AddOutcome(&outs[i])
		}
	}
	if e.Count() != 14 {
		t.Fatalf("count %d", e.Count())
	}
	var b Batch
	if err := b.Decode(e.Bytes()); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(b.Messages, msgs) || !reflect.DeepEqual(b.Forwards, fwd) || !reflect.DeepEqual(b.Outcomes, outs) {
		t.Fatal("mixed batch changed in the round trip")
	}
	// Appending to a decoded message's entries must not clobber the next.
	next := b.Messages[1].Entries[0]
	b.Messages[0].Entries = append(b.Messages[0].Entries, raftmsg.Entry{Term: 1})
	if !reflect.DeepEqual(b.Messages[1].Entries[0], next) {
		t.Fatal("append to one message's entries overwrote another's")
	}
}

// TestReferencedDataEncodesTheSame: referencing entry data instead of
// copying it changes nothing in the payload.
func TestReferencedDataEncodesTheSame(t *testing.T) {
	r := rand.New(rand.NewPCG(8, 8))
	var copied, referenced Encoder
	referenced.RefMinBytes = 100
	for range 20 {
		copied.Reset()
		referenced.Reset()
		for range 1 + r.IntN(5) {
			m := randomMessage(t, r)
			copied.AddMessage(&m)
			referenced.AddMessage(&m)
			copied.AddOutcome(&Outcome{RequestID: 1, Body: []byte("b")})
			referenced.AddOutcome(&Outcome{RequestID: 1, Body: []byte("b")})
		}
		if copied.Len() != referenced.Len() {
			t.Fatalf("Len %d vs %d", copied.Len(), referenced.Len())
		}
		var joined []byte
		for _, s := range referenced.Segments() {
			joined = append(joined, s...)
		}
		if !bytes.Equal(copied.Bytes(), joined) || !bytes.Equal(copied.Bytes(), referenced.Bytes()) {
			t.Fatal("referenced encoding differs from the copied one")
		}
		if len(referenced.Segments()) < 2 {
			t.Fatal("nothing was referenced")
		}
	}
}

func TestDecodeIsZeroCopy(t *testing.T) {
	m := raftmsg.Message{Type: raftmsg.MsgApp, Entries: []raftmsg.Entry{{Data: []byte("hello")}}}
	var e Encoder
	e.AddMessage(&m)
	payload := e.Bytes()
	var b Batch
	if err := b.Decode(payload); err != nil {
		t.Fatal(err)
	}
	data := b.Messages[0].Entries[0].Data
	if &payload[len(payload)-5] != &data[0] {
		t.Fatal("entry data was copied, not pointed into the payload")
	}
}

func TestMalformedBatches(t *testing.T) {
	var e Encoder
	good := raftmsg.Message{Type: raftmsg.MsgApp, Entries: []raftmsg.Entry{{Data: []byte("abc")}}, Snapshot: raftmsg.SnapshotMeta{Conf: raftmsg.ConfState{Voters: []raftmsg.NodeID{1}}}}
	e.AddMessage(&good)
	valid := bytes.Clone(e.Bytes())
	mut := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(valid)) }
	const off = 4 + 1 // count, kind
	votersAt := off + 3 + 11*8
	entriesAt := votersAt + 4 + 8 + 4
	for _, tc := range []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"short count", []byte{1, 0}},
		{"count larger than bytes", mut(func(b []byte) []byte { b[0] = 200; return b })},
		{"huge count", mut(func(b []byte) []byte { b[0], b[1], b[2], b[3] = 0xff, 0xff, 0xff, 0xff; return b })},
		{"unknown kind", mut(func(b []byte) []byte { b[4] = 9; return b })},
		{"unknown message type", mut(func(b []byte) []byte { b[off] = byte(raftmsg.NumMessageTypes); return b })},
		{"invalid message type", mut(func(b []byte) []byte { b[off] = 0; return b })},
		{"unknown flags", mut(func(b []byte) []byte { b[off+1] = 2; return b })},
		{"unknown reject reason", mut(func(b []byte) []byte { b[off+2] = 200; return b })},
		{"voters beyond bytes", mut(func(b []byte) []byte { b[votersAt] = 100; return b })},
		{"entries beyond bytes", mut(func(b []byte) []byte { b[entriesAt+3] = 0x10; return b })},
		{"data length beyond bytes", mut(func(b []byte) []byte { b[len(b)-5] = 200; return b })},
		{"truncated data", valid[:len(valid)-1]},
		{"trailing bytes", append(bytes.Clone(valid), 0)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b Batch
			if err := b.Decode(tc.b); !errors.Is(err, ErrMalformed) {
				t.Fatalf("got %v, want ErrMalformed", err)
			}
		})
	}
}

func FuzzDecode(f *testing.F) {
	r := rand.New(rand.NewPCG(5, 6))
	var e Encoder
	m := randomMessage(f, r)
	e.AddMessage(&m)
	e.AddForwardRequest(&ForwardRequest{Op: ForwardPropose, RequestID: 1, Payload: []byte("p")})
	e.AddOutcome(&Outcome{Status: StatusCommitted, RequestID: 1, Revision: 2})
	f.Add(bytes.Clone(e.Bytes()))
	f.Add([]byte{0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		var b Batch
		if err := b.Decode(data); err != nil {
			return
		}
		// A decoded batch re-encodes to the same bytes.
		var e Encoder
		for i := range b.Messages {
			e.AddMessage(&b.Messages[i])
		}
		for i := range b.Forwards {
			e.AddForwardRequest(&b.Forwards[i])
		}
		for i := range b.Outcomes {
			e.AddOutcome(&b.Outcomes[i])
		}
		var again Batch
		if err := again.Decode(e.Bytes()); err != nil {
			t.Fatalf("re-encoded batch does not decode: %v", err)
		}
		if !reflect.DeepEqual(again.Messages, b.Messages) || !reflect.DeepEqual(again.Forwards, b.Forwards) || !reflect.DeepEqual(again.Outcomes, b.Outcomes) {
			t.Fatal("decode(encode(decode(x))) differs")
		}
	})
}

func batch64(entryBytes int) []raftmsg.Message {
	data := bytes.Repeat([]byte{'v'}, entryBytes)
	m := raftmsg.Message{Type: raftmsg.MsgApp, From: 1, To: 2, Term: 5, LogTerm: 5, Index: 100, Commit: 99}
	for i := range 64 {
		m.Entries = append(m.Entries, raftmsg.Entry{Term: 5, Index: uint64(101 + i), RequestID: uint64(i), Data: data})
	}
	return []raftmsg.Message{m}
}

// BenchmarkEncodeDecode64 encodes and decodes one MsgApp of 64 entries:
// steady state must be 0 allocs/op.
func BenchmarkEncodeDecode64(b *testing.B) {
	msgs := batch64(256)
	var e Encoder
	var bp BatchPool
	b.ReportAllocs()
	for b.Loop() {
		e.Reset()
		for i := range msgs {
			e.AddMessage(&msgs[i])
		}
		bt := bp.Get()
		if err := bt.Decode(e.Bytes()); err != nil {
			b.Fatal(err)
		}
		if len(bt.Messages[0].Entries) != 64 {
			b.Fatal("lost entries")
		}
		bt.Release()
	}
	b.SetBytes(int64(e.Len()))
}
