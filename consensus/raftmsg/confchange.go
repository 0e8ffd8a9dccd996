package raftmsg

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Encoded ConfChange (all integers little-endian):
//
//	+---------+------------+-------------+-------------------+
//	| type u8 | nodeID u64 | ctxLen u32  | context (ctxLen)  |
//	+---------+------------+-------------+-------------------+
const confChangeHeaderBytes = 1 + 8 + 4

// MaxConfChangeContextBytes bounds the context a decoder accepts: a name
// and two addresses fit many times over.
const MaxConfChangeContextBytes = 64 << 10

// ErrBadConfChange wraps every ConfChange decoding failure.
var ErrBadConfChange = errors.New("raftmsg: malformed conf change")

// AppendConfChange appends the encoding of cc to dst.
func AppendConfChange(dst []byte, cc ConfChange) []byte {
	dst = append(dst, byte(cc.Type))
	dst = binary.LittleEndian.AppendUint64(dst, uint64(cc.NodeID))
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(cc.Context)))
	return append(dst, cc.Context...)
}

// DecodeConfChange parses an encoded ConfChange. The returned Context is a
// copy, so it outlives b.
func DecodeConfChange(b []byte) (ConfChange, error) {
	if len(b) < confChangeHeaderBytes {
		return ConfChange{}, fmt.Errorf("%w: %d bytes, need at least %d", ErrBadConfChange, len(b), confChangeHeaderBytes)
	}
	cc := ConfChange{
		Type:   ConfChangeType(b[0]),
		NodeID: NodeID(binary.LittleEndian.Uint64(b[1:9])),
	}
	if !cc.Type.Valid() {
		return ConfChange{}, fmt.Errorf("%w: unknown type %d", ErrBadConfChange, b[0])
	}
	if cc.NodeID == None {
		return ConfChange{}, fmt.Errorf("%w: node id 0", ErrBadConfChange)
	}
	n := binary.LittleEndian.Uint32(b[9:13])
	if n > MaxConfChangeContextBytes || uint64(n) != uint64(len(b)-confChangeHeaderBytes) {
		return ConfChange{}, fmt.Errorf("%w: context length %d with %d bytes left", ErrBadConfChange, n, len(b)-confChangeHeaderBytes)
	}
	if n > 0 {
		cc.Context = append([]byte(nil), b[confChangeHeaderBytes:]...)
	}
	return cc, nil
}
