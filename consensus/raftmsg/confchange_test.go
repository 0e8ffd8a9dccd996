package raftmsg

import (
	"bytes"
	"errors"
	"testing"
)

func TestConfChangeRoundTrip(t *testing.T) {
	for _, cc := range []ConfChange{
		{Type: ConfChangeAddLearner, NodeID: 7, Context: []byte("n4=127.0.0.1:7380")},
		{Type: ConfChangePromote, NodeID: 1<<64 - 1},
		{Type: ConfChangeRemove, NodeID: 3, Context: []byte{}},
	} {
		got, err := DecodeConfChange(AppendConfChange(nil, cc))
		if err != nil {
			t.Fatalf("decode %+v: %v", cc, err)
		}
		if got.Type != cc.Type || got.NodeID != cc.NodeID || !bytes.Equal(got.Context, cc.Context) {
			t.Fatalf("round trip: got %+v, want %+v", got, cc)
		}
	}
}

func TestConfChangeRejectsMalformed(t *testing.T) {
	good := AppendConfChange(nil, ConfChange{Type: ConfChangeRemove, NodeID: 3, Context: []byte("ab")})
	cases := map[string][]byte{
		"empty":        nil,
		"short header": good[:5],
		"bad type":     append([]byte{9}, good[1:]...),
		"zero node":    append(append([]byte{good[0]}, make([]byte, 8)...), good[9:]...),
		"truncated":    good[:len(good)-1],
		"trailing":     append(append([]byte(nil), good...), 0),
	}
	for name, b := range cases {
		if _, err := DecodeConfChange(b); !errors.Is(err, ErrBadConfChange) {
			t.Errorf("%s: got %v, want ErrBadConfChange", name, err)
		}
	}
}

func FuzzDecodeConfChange(f *testing.F) {
	f.Add(AppendConfChange(nil, ConfChange{Type: ConfChangeAddLearner, NodeID: 2, Context: []byte("x")}))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		cc, err := DecodeConfChange(b)
		if err != nil {
			return
		}
		if !bytes.Equal(AppendConfChange(nil, cc), b) {
			t.Fatalf("accepted input does not re-encode to itself")
		}
	})
}
