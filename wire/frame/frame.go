// Package frame reads and writes the frames of the edgekv peer protocol
// over one byte stream: a fixed, checksummed header followed by a
// checksummed payload, optionally compressed.
//
// Frame layout (all integers little-endian):
//
//	 0      2      3       4         8         12          16           20          24
//	 +------+------+-------+---------+---------+-----------+------------+-----------+
//	 | "EK" | type | flags | wireLen | rawLen  | recordLen | payloadCRC | headerCRC |
//	 |  2B  |  u8  |  u8   |   u32   |   u32   |    u32    |    u32     |    u32    |
//	 +------+------+-------+---------+---------+-----------+------------+-----------+
//	 | payload: wireLen bytes (compressed with the flags' codec, or raw) ...         |
//	 +-------------------------------------------------------------------------------+
//
//	flags: bits 0-1 codec (0 none, 1 snappy, 2 zstd), bit 2 "more" (the record
//	       continues in the next frame), bits 3-7 zero.
//	wireLen:    payload bytes on the wire; <= rawLen, == rawLen when raw.
//	rawLen:     payload bytes after decompression; <= the frame limit.
//	recordLen:  bytes of the whole record this frame is part of; a record
//	            larger than one frame is split into frames of the same type
//	            and recordLen, all but the last flagged "more".
//	payloadCRC: CRC-32C of the wire payload; headerCRC: of bytes 0-19.
//
// Every length is checked against the limits before anything is
// allocated; a record is assembled in one buffer from a zerocopy.Pool and
// handed to the caller, who releases it. Writes send header and payload
// with one vectored write (writev), never concatenating them.
//
// The package must never trust a length before checking it, never panic on
// input, and never allocate per frame in steady state.
package frame

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// HeaderBytes is the size of the fixed frame header.
const HeaderBytes = 24

// Magic opens every frame header, so a desynchronised stream fails fast.
const Magic = "EK"

// Type says what a frame's record holds; the transport defines the
// meanings, this package only rejects unknown values.
type Type uint8

const (
	TypeInvalid Type = iota
	// TypeBatch: a batch of Raft messages and forwarding records.
	TypeBatch
	// TypePing: keeps an idle connection alive; empty.
	TypePing
	// TypeSnapBegin: the MsgSnap message and total size of a snapshot stream.
	TypeSnapBegin
	// TypeSnapChunk: a piece of snapshot data.
	TypeSnapChunk
	// TypeSnapEnd: end of a snapshot stream.
	TypeSnapEnd
	// TypeSnapAck: receiver to sender, bytes consumed or the final verdict.
	TypeSnapAck
	typeCount
)

// Valid reports whether t is a known type.
func (t Type) Valid() bool { return t > TypeInvalid && t < typeCount }

// Codec is a payload compression codec.
type Codec uint8

const (
	CodecNone Codec = iota
	CodecSnappy
	CodecZstd
	codecCount
)

// Valid reports whether c is a known codec.
func (c Codec) Valid() bool { return c < codecCount }

func (c Codec) String() string {
	switch c {
	case CodecNone:
		return "none"
	case CodecSnappy:
		return "snappy"
	case CodecZstd:
		return "zstd"
	}
	return fmt.Sprintf("codec(%d)", uint8(c))
}

const (
	flagCodecMask = 0x03
	flagMore      = 0x04
	flagKnownMask = flagCodecMask | flagMore
)

// Header is a decoded frame header.
type Header struct {
	Type       Type
	Codec      Codec
	More       bool
	WireLen    uint32
	RawLen     uint32
	RecordLen  uint32
	PayloadCRC uint32
}

// Limits bound what a reader accepts and a writer produces.
type Limits struct {
	// MaxFrameBytes bounds one frame's raw payload.
	MaxFrameBytes int
	// MaxRecordBytes bounds a whole (possibly split) record.
	MaxRecordBytes int
}

// ErrCorrupt wraps every malformed-frame error.
var ErrCorrupt = errors.New("frame: corrupt")

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Checksum is the CRC-32C used for headers and payloads.
func Checksum(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

// PutHeader encodes h into dst.
func PutHeader(dst *[HeaderBytes]byte, h Header) {
	dst[0], dst[1] = Magic[0], Magic[1]
	dst[2] = byte(h.Type)
	flags := byte(h.Codec) & flagCodecMask
	if h.More {
		flags |= flagMore
	}
	dst[3] = flags
	binary.LittleEndian.PutUint32(dst[4:], h.WireLen)
	binary.LittleEndian.PutUint32(dst[8:], h.RawLen)
	binary.LittleEndian.PutUint32(dst[12:], h.RecordLen)
	binary.LittleEndian.PutUint32(dst[16:], h.PayloadCRC)
	binary.LittleEndian.PutUint32(dst[20:], Checksum(dst[:20]))
}

// DecodeHeader parses and validates a header against lim. It checks
// everything that can be checked without the payload.
func DecodeHeader(b []byte, lim Limits) (Header, error) {
	if len(b) < HeaderBytes {
		return Header{}, fmt.Errorf("%w: header of %d bytes, need %d", ErrCorrupt, len(b), HeaderBytes)
	}
	if b[0] != Magic[0] || b[1] != Magic[1] {
		return Header{}, fmt.Errorf("%w: bad magic %#x %#x", ErrCorrupt, b[0], b[1])
	}
	if got, want := Checksum(b[:20]), binary.LittleEndian.Uint32(b[20:]); got != want {
		return Header{}, fmt.Errorf("%w: header checksum %#x, want %#x", ErrCorrupt, got, want)
	}
	h := Header{
		Type:       Type(b[2]),
		Codec:      Codec(b[3] & flagCodecMask),
		More:       b[3]&flagMore != 0,
		WireLen:    binary.LittleEndian.Uint32(b[4:]),
		RawLen:     binary.LittleEndian.Uint32(b[8:]),
		RecordLen:  binary.LittleEndian.Uint32(b[12:]),
		PayloadCRC: binary.LittleEndian.Uint32(b[16:]),
	}
	switch {
	case !h.Type.Valid():
		return Header{}, fmt.Errorf("%w: unknown frame type %d", ErrCorrupt, b[2])
	case b[3]&^flagKnownMask != 0:
		return Header{}, fmt.Errorf("%w: unknown flags %#x", ErrCorrupt, b[3])
	case !h.Codec.Valid():
		return Header{}, fmt.Errorf("%w: unknown codec %d", ErrCorrupt, h.Codec)
	case uint64(h.RawLen) > uint64(lim.MaxFrameBytes):
		return Header{}, fmt.Errorf("%w: frame payload of %d bytes exceeds limit %d", ErrCorrupt, h.RawLen, lim.MaxFrameBytes)
	case uint64(h.RecordLen) > uint64(lim.MaxRecordBytes):
		return Header{}, fmt.Errorf("%w: record of %d bytes exceeds limit %d", ErrCorrupt, h.RecordLen, lim.MaxRecordBytes)
	case h.RawLen > h.RecordLen:
		return Header{}, fmt.Errorf("%w: frame payload %d larger than its record %d", ErrCorrupt, h.RawLen, h.RecordLen)
	case h.Codec == CodecNone && h.WireLen != h.RawLen:
		return Header{}, fmt.Errorf("%w: raw frame with wire length %d != raw length %d", ErrCorrupt, h.WireLen, h.RawLen)
	case h.Codec != CodecNone && (h.WireLen >= h.RawLen || h.WireLen == 0):
		// A writer only compresses when it saves space.
		return Header{}, fmt.Errorf("%w: compressed frame of %d bytes for %d raw", ErrCorrupt, h.WireLen, h.RawLen)
	case h.More && h.RawLen == 0:
		// Every continued frame must make progress.
		return Header{}, fmt.Errorf("%w: empty continued frame", ErrCorrupt)
	}
	return h, nil
}
