package kv

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// sampleCommands covers every kind, condition and optional field.
func sampleCommands() []*Command {
	withTs := func(c *Command) *Command { c.TimestampNs = 1_700_000_000_123_456_789; return c }
	return []*Command{
		cmdPut("k", "v"),
		cmdPut("k", ""),
		withTs(cmdPutIfMatch("κλειδί/ü", "value", 1<<40)),
		cmdPutIfAbsent(strings.Repeat("x", MaxKeyBytes), strings.Repeat("v", 1000)),
		cmdDel("gone"),
		cmdDelIfMatch("gone", 3),
		withIdem(cmdDelPrefix("app/"), "idem-1"),
		cmdDelPrefix("\xff\xfe"),
		withIdem(withTs(cmdBatch(opPut("a", "1"), opDel("b"), opPutIf("c", "3", CondIfAbsent, 0),
			opPutIf("d", "", CondIfMatch, 12), opDelIfMatch("e", 5))), strings.Repeat("i", MaxIdempotencyKeyBytes)),
		cmdBatch(opDel("only")),
	}
}

func equalCommands(a, b *Command) bool {
	norm := func(c *Command) Command {
		n := *c
		if len(n.Ops) == 0 {
			n.Ops = nil
		}
		if len(n.IdempotencyKey) == 0 {
			n.IdempotencyKey = nil
		}
		normOp := func(o *Op) {
			if len(o.Value) == 0 {
				o.Value = nil
			}
			if len(o.Key) == 0 {
				o.Key = nil
			}
		}
		normOp(&n.Op)
		n.Ops = append([]Op(nil), n.Ops...)
		for i := range n.Ops {
			normOp(&n.Ops[i])
		}
		return n
	}
	return reflect.DeepEqual(norm(a), norm(b))
}

func TestCommandRoundTrip(t *testing.T) {
	var scratch Command
	for i, c := range sampleCommands() {
		data := mustEncode(t, c)
		if err := DecodeCommand(data, Limits{}, &scratch); err != nil {
			t.Fatalf("command %d: decode: %v", i, err)
		}
		if !equalCommands(c, &scratch) {
			t.Fatalf("command %d: decoded %+v, want %+v", i, scratch, *c)
		}
		again, err := AppendCommand(nil, &scratch, Limits{})
		if err != nil || !bytes.Equal(again, data) {
			t.Fatalf("command %d: re-encoding differs (%v)", i, err)
		}
	}
}

// TestDecodeEveryTruncation: every strict prefix of a valid encoding, and
// the encoding with a byte appended, is refused with ErrInvalid.
func TestDecodeEveryTruncation(t *testing.T) {
	var c Command
	for i, cmd := range sampleCommands() {
		data := mustEncode(t, cmd)
		for n := range len(data) {
			err := DecodeCommand(data[:n], Limits{}, &c)
			if err == nil {
				t.Fatalf("command %d cut at %d/%d decoded", i, n, len(data))
			}
			if !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrTooLarge) {
				t.Fatalf("command %d cut at %d: unclassified error %v", i, n, err)
			}
		}
		if err := DecodeCommand(append(data, 0), Limits{}, &c); !errors.Is(err, ErrInvalid) {
			t.Fatalf("command %d with a trailing byte: %v", i, err)
		}
	}
}

func TestValidateRefuses(t *testing.T) {
	manyOps := make([]Op, 11)
	for i := range manyOps {
		manyOps[i] = opPut(fmt.Sprint("k", i), "v")
	}
	dupBig := make([]Op, 40)
	for i := range dupBig {
		dupBig[i] = opPut(fmt.Sprint("k", i), "v")
	}
	dupBig[39].Key = []byte("k3")
	lim := Limits{MaxValueBytes: 8, MaxBatchOps: 10}
	tests := []struct {
		name string
		cmd  *Command
		want error
	}{
		{"empty key", cmdPut("", "v"), ErrInvalid},
		{"key too long", cmdPut(strings.Repeat("k", MaxKeyBytes+1), "v"), ErrTooLarge},
		{"key not UTF-8", cmdPut("a\xffb", "v"), ErrInvalid},
		{"value too large", cmdPut("k", "123456789"), ErrTooLarge},
		{"delete if-absent", &Command{Kind: KindDelete, Op: Op{Kind: KindDelete, Key: []byte("k"), Cond: CondIfAbsent}}, ErrInvalid},
		{"delete with value", &Command{Kind: KindDelete, Op: Op{Kind: KindDelete, Key: []byte("k"), Value: []byte("v")}}, ErrInvalid},
		{"unknown condition", &Command{Kind: KindPut, Op: Op{Kind: KindPut, Key: []byte("k"), Cond: condCount}}, ErrInvalid},
		{"if-match revision without condition", &Command{Kind: KindPut, Op: Op{Kind: KindPut, Key: []byte("k"), IfMatch: 3}}, ErrInvalid},
		{"op kind differs", &Command{Kind: KindPut, Op: Op{Kind: KindDelete, Key: []byte("k")}}, ErrInvalid},
		{"unknown kind", &Command{Kind: kindCount}, ErrInvalid},
		{"empty prefix", cmdDelPrefix(""), ErrInvalid},
		{"prefix too long", cmdDelPrefix(strings.Repeat("p", MaxKeyBytes+1)), ErrTooLarge},
		{"empty batch", cmdBatch(), ErrInvalid},
		{"batch too long", cmdBatch(manyOps...), ErrTooLarge},
		{"batch op with delete-prefix", cmdBatch(Op{Kind: KindDeletePrefix, Key: []byte("p")}), ErrInvalid},
		{"batch duplicate keys", cmdBatch(opPut("a", "1"), opDel("a")), ErrInvalid},
		{"batch duplicate keys (map path)", &Command{Kind: KindBatch, Ops: dupBig}, ErrInvalid},
		{"batch bad op key", cmdBatch(opPut("a", "1"), opPut("", "2")), ErrInvalid},
		{"batch with single op too", &Command{Kind: KindBatch, Op: opPut("a", "1"), Ops: []Op{opPut("b", "1")}}, ErrInvalid},
		{"idempotency key too long", withIdem(cmdPut("k", "v"), strings.Repeat("i", MaxIdempotencyKeyBytes+1)), ErrTooLarge},
		{"fingerprint without key", &Command{Kind: KindPut, Op: opPut("k", "v"), Fingerprint: Fingerprint{1}}, ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// dupBig is 40 ops: validate it under a bound that admits it.
			l := lim
			if len(tt.cmd.Ops) > 11 {
				l.MaxBatchOps = 100
			}
			_, err := AppendCommand(nil, tt.cmd, l)
			if !errors.Is(err, tt.want) {
				t.Fatalf("AppendCommand: %v, want %v", err, tt.want)
			}
		})
	}
}

// TestDecodeRefusesWhatEncodeWould: bounds hold on the decode side too,
// for bytes no honest encoder produced.
func TestDecodeRefusesWhatEncodeWould(t *testing.T) {
	var c Command
	big := mustEncode(t, cmdPut("k", strings.Repeat("v", 100)))
	if err := DecodeCommand(big, Limits{MaxValueBytes: 99}, &c); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("value over the limit: %v", err)
	}
	batch := mustEncode(t, cmdBatch(opPut("a", "1"), opPut("b", "2"), opPut("c", "3")))
	if err := DecodeCommand(batch, Limits{MaxBatchOps: 2}, &c); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("ops over the limit: %v", err)
	}
	// A batch claiming a huge op count in a few bytes is refused before
	// any allocation for it.
	hdr := mustEncode(t, cmdBatch(opDel("a")))
	lying := append(hdr[:11:11], 0xff, 0xff, 0x03, 1, 0, 1, 'a') // count 65535
	if err := DecodeCommand(lying, Limits{MaxBatchOps: 1 << 20}, &c); !errors.Is(err, ErrInvalid) {
		t.Fatalf("lying op count: %v", err)
	}
	wrongVersion := append([]byte(nil), big...)
	wrongVersion[0] = CommandVersion + 1
	if err := DecodeCommand(wrongVersion, Limits{}, &c); !errors.Is(err, ErrInvalid) {
		t.Fatalf("wrong version: %v", err)
	}
	dup := mustEncode(t, cmdBatch(opPut("a", "1"), opPut("b", "2")))
	i := bytes.LastIndexByte(dup, 'b')
	dup[i] = 'a'
	if err := DecodeCommand(dup, Limits{}, &c); !errors.Is(err, ErrInvalid) {
		t.Fatalf("duplicate keys: %v", err)
	}
	if err := DecodeCommand(nil, Limits{}, &c); !errors.Is(err, ErrInvalid) {
		t.Fatalf("empty input: %v", err)
	}
}

func TestStampTimestamp(t *testing.T) {
	data := mustEncode(t, withIdem(cmdPut("k", "v"), "r"))
	if err := StampTimestamp(data, 1234567); err != nil {
		t.Fatal(err)
	}
	var c Command
	if err := DecodeCommand(data, Limits{}, &c); err != nil || c.TimestampNs != 1234567 {
		t.Fatalf("stamped command: %v, timestamp %d", err, c.TimestampNs)
	}
	if err := StampTimestamp([]byte{CommandVersion, 1, 2}, 1); err == nil {
		t.Fatal("stamped a short buffer")
	}
	if err := StampTimestamp(make([]byte, 20), 1); err == nil {
		t.Fatal("stamped a buffer without the version")
	}
}

func TestFingerprint(t *testing.T) {
	a := cmdPut("k", "v")
	b := at(cmdPut("k", "v"), 99) // time is not part of the request
	b.IdempotencyKey = []byte("other")
	if a.ComputeFingerprint() != b.ComputeFingerprint() {
		t.Fatal("same request, different fingerprints")
	}
	distinct := []*Command{
		cmdPut("k", "v"), cmdPut("k", "w"), cmdPut("kk", "v"), cmdPutIfAbsent("k", "v"),
		cmdPutIfMatch("k", "v", 1), cmdPutIfMatch("k", "v", 2), cmdDel("k"), cmdDelPrefix("k"),
		cmdBatch(opPut("k", "v")), cmdBatch(opDel("k")),
	}
	seen := map[Fingerprint]int{}
	for i, c := range distinct {
		fp := c.ComputeFingerprint()
		if j, dup := seen[fp]; dup {
			t.Fatalf("commands %d and %d share a fingerprint", j, i)
		}
		seen[fp] = i
	}
}

func FuzzDecodeCommand(f *testing.F) {
	for _, c := range sampleCommands() {
		f.Add(mustEncode(f, c))
	}
	f.Add([]byte{})
	f.Add([]byte{CommandVersion, byte(KindBatch), 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f})
	lim := Limits{MaxValueBytes: 1 << 16, MaxBatchOps: 1000}
	f.Fuzz(func(t *testing.T, data []byte) {
		var c Command
		if err := DecodeCommand(data, lim, &c); err != nil {
			if !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrTooLarge) {
				t.Fatalf("unclassified error %v", err)
			}
			return
		}
		// What decodes re-encodes, and decodes to the same command.
		again, err := AppendCommand(nil, &c, lim)
		if err != nil {
			t.Fatalf("decoded command does not re-encode: %v", err)
		}
		var c2 Command
		if err := DecodeCommand(again, lim, &c2); err != nil || !equalCommands(&c, &c2) {
			t.Fatalf("re-decoded %+v (%v), want %+v", c2, err, c)
		}
		// And applying it never panics.
		m, err := NewMachine(Config{Limits: lim, QuotaBytes: 1 << 20})
		if err != nil {
			t.Fatal(err)
		}
		if r, err := m.ApplyCommand(1, 1, data); err != nil || r.Status == StatusInvalid {
			t.Fatalf("apply of a valid command: %+v %v", r, err)
		}
	})
}

// TestAppendCommandAllocatesOnce: the encoded size bound holds for every
// kind of command (so AppendCommand never regrows its buffer), with the
// longest varints and conditions.
func TestAppendCommandAllocatesOnce(t *testing.T) {
	big := bytes.Repeat([]byte("v"), 1<<17) // a three-byte length varint
	ops := []Op{
		{Kind: KindPut, Cond: CondIfMatch, IfMatch: ^uint64(0), Key: []byte("a"), Value: big},
		{Kind: KindDelete, Cond: CondIfMatch, IfMatch: 1, Key: []byte("b")},
		{Kind: KindPut, Cond: CondIfAbsent, Key: []byte("c"), Value: []byte("x")},
	}
	many := make([]Op, 100) // per-op overhead adds up past the header's slack
	for i := range many {
		many[i] = Op{Kind: KindPut, Cond: CondIfMatch, IfMatch: 1 << 60, Key: []byte{byte(i)}, Value: big[:200]}
	}
	cmds := []Command{
		{Kind: KindBatch, Ops: many},
		NewPut([]byte("k"), big, CondIfMatch, ^uint64(0)),
		NewDelete([]byte("k"), CondNone, 0),
		NewDeletePrefix([]byte("pre/")),
		{Kind: KindBatch, Ops: ops},
		{Kind: KindBatch, Ops: ops, IdempotencyKey: []byte("idem-key"), Fingerprint: Fingerprint{7}, TimestampNs: -1},
	}
	for _, c := range cmds {
		out, err := AppendCommand(nil, &c, Limits{})
		if err != nil {
			t.Fatalf("%v: %v", c.Kind, err)
		}
		if bound := c.encodedBytesBound(); len(out) > bound {
			t.Errorf("%v: encoded %d bytes, bound %d", c.Kind, len(out), bound)
		}
	}
}
