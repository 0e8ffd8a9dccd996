package wal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"

	"github.com/edgekv/edgekv/consensus/raftmsg"
)

// FormatVersion is the record format written by this code.
const FormatVersion = 1

// Record types.
const (
	recSegmentHeader uint8 = 1
	recEntry         uint8 = 2
	recHardState     uint8 = 3
	recSnapshotRef   uint8 = 4
	recBatchEnd      uint8 = 5
)

const (
	headerBytes = 9 // crc u32 | length u32 | type u8
	// MaxPayloadBytes bounds one record; a larger length is damage.
	MaxPayloadBytes = 64 << 20

	entryFixedBytes     = 33
	hardStateBytes      = 24
	snapshotRefBytes    = 17
	batchEndBytes       = 16
	segmentHeaderBytes  = 18
	batchEndRecordBytes = headerBytes + batchEndBytes
)

var (
	segmentMagic  = [8]byte{'e', 'd', 'g', 'e', 'k', 'v', 'W', 'L'}
	batchEndMagic = [8]byte{'e', 'd', 'g', 'e', 'k', 'v', 'B', 'E'}
	castagnoli    = crc32.MakeTable(crc32.Castagnoli)
)

// Decoding outcomes that are not damage by themselves: the caller decides.
var (
	errZeroHeader = errors.New("zero header")
	errShort      = errors.New("record runs past the end of the data")
	errChecksum   = errors.New("checksum mismatch")
	errLength     = errors.New("record length out of range")
	errType       = errors.New("unknown record type")
)

// SnapshotRef records that a snapshot file at (Index, Term) is durable.
// Reset means the snapshot was installed from the leader and replaces the
// whole log (paper §7); a local snapshot only makes entries <= Index
// unnecessary.
type SnapshotRef struct {
	Index uint64
	Term  uint64
	Reset bool
}

// appendRecord appends one framed record to dst. payload is written by fill
// into the payloadBytes reserved for it.
func appendRecord(dst []byte, typ uint8, payloadBytes int, fill func(p []byte)) []byte {
	start := len(dst)
	dst = grow(dst, headerBytes+payloadBytes)
	rec := dst[start:]
	binary.LittleEndian.PutUint32(rec[4:8], uint32(payloadBytes))
	rec[8] = typ
	fill(rec[headerBytes:])
	binary.LittleEndian.PutUint32(rec[0:4], crc32.Checksum(rec[4:], castagnoli))
	return dst
}

func grow(b []byte, n int) []byte {
	if cap(b)-len(b) < n {
		nb := make([]byte, len(b), 2*cap(b)+n)
		copy(nb, b)
		b = nb
	}
	return b[:len(b)+n]
}

func appendEntry(dst []byte, e *raftmsg.Entry) []byte {
	start := len(dst)
	dst = grow(dst, headerBytes+entryFixedBytes+len(e.Data))
	rec := dst[start:]
	binary.LittleEndian.PutUint32(rec[4:8], uint32(entryFixedBytes+len(e.Data)))
	rec[8] = recEntry
	p := rec[headerBytes:]
	binary.LittleEndian.PutUint64(p[0:], e.Term)
	binary.LittleEndian.PutUint64(p[8:], e.Index)
	p[16] = uint8(e.Type)
	binary.LittleEndian.PutUint64(p[17:], e.RequestID)
	binary.LittleEndian.PutUint64(p[25:], uint64(e.Origin))
	copy(p[entryFixedBytes:], e.Data)
	binary.LittleEndian.PutUint32(rec[0:4], crc32.Checksum(rec[4:], castagnoli))
	return dst
}

func appendHardState(dst []byte, hs raftmsg.HardState) []byte {
	return appendRecord(dst, recHardState, hardStateBytes, func(p []byte) {
		binary.LittleEndian.PutUint64(p[0:], hs.Term)
		binary.LittleEndian.PutUint64(p[8:], uint64(hs.Vote))
		binary.LittleEndian.PutUint64(p[16:], hs.Commit)
	})
}

func appendSnapshotRef(dst []byte, ref SnapshotRef) []byte {
	return appendRecord(dst, recSnapshotRef, snapshotRefBytes, func(p []byte) {
		binary.LittleEndian.PutUint64(p[0:], ref.Index)
		binary.LittleEndian.PutUint64(p[8:], ref.Term)
		p[16] = 0
		if ref.Reset {
			p[16] = 1
		}
	})
}

func appendSegmentHeader(dst []byte, seq uint64) []byte {
	return appendRecord(dst, recSegmentHeader, segmentHeaderBytes, func(p []byte) {
		copy(p[0:8], segmentMagic[:])
		binary.LittleEndian.PutUint16(p[8:], FormatVersion)
		binary.LittleEndian.PutUint64(p[10:], seq)
	})
}

// appendBatchEnd appends a BatchEnd whose record starts at segment offset
// off (which must be the offset dst[len(dst)] will be written at).
func appendBatchEnd(dst []byte, off int64) []byte {
	return appendRecord(dst, recBatchEnd, batchEndBytes, func(p []byte) {
		binary.LittleEndian.PutUint64(p[0:], uint64(off))
		copy(p[8:16], batchEndMagic[:])
	})
}

// decodeRecord frames the record at the start of b: its type, payload (a
// sub-slice of b) and total size. It never allocates.
func decodeRecord(b []byte) (typ uint8, payload []byte, size int, err error) {
	if len(b) < headerBytes {
		if allZero(b) {
			return 0, nil, 0, errZeroHeader
		}
		return 0, nil, 0, errShort
	}
	if allZero(b[:headerBytes]) {
		return 0, nil, 0, errZeroHeader
	}
	length := binary.LittleEndian.Uint32(b[4:8])
	if length > MaxPayloadBytes {
		return 0, nil, 0, errLength
	}
	size = headerBytes + int(length)
	if size > len(b) {
		return 0, nil, 0, errShort
	}
	if crc32.Checksum(b[4:size], castagnoli) != binary.LittleEndian.Uint32(b[0:4]) {
		return 0, nil, 0, errChecksum
	}
	typ = b[8]
	if typ < recSegmentHeader || typ > recBatchEnd {
		return 0, nil, 0, errType
	}
	return typ, b[headerBytes:size], size, nil
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// decodeEntry decodes an Entry payload; Data aliases p.
func decodeEntry(p []byte) (raftmsg.Entry, error) {
	if len(p) < entryFixedBytes {
		return raftmsg.Entry{}, fmt.Errorf("entry record of %d bytes, want at least %d", len(p), entryFixedBytes)
	}
	e := raftmsg.Entry{
		Term:      binary.LittleEndian.Uint64(p[0:]),
		Index:     binary.LittleEndian.Uint64(p[8:]),
		Type:      raftmsg.EntryType(p[16]),
		RequestID: binary.LittleEndian.Uint64(p[17:]),
		Origin:    raftmsg.NodeID(binary.LittleEndian.Uint64(p[25:])),
		Data:      p[entryFixedBytes:],
	}
	if e.Type > raftmsg.EntryConfChange {
		return raftmsg.Entry{}, fmt.Errorf("entry %d has unknown type %d", e.Index, e.Type)
	}
	if e.Index == 0 {
		return raftmsg.Entry{}, errors.New("entry with index 0")
	}
	return e, nil
}

func decodeHardState(p []byte) (raftmsg.HardState, error) {
	if len(p) != hardStateBytes {
		return raftmsg.HardState{}, fmt.Errorf("hard state record of %d bytes, want %d", len(p), hardStateBytes)
	}
	return raftmsg.HardState{
		Term:   binary.LittleEndian.Uint64(p[0:]),
		Vote:   raftmsg.NodeID(binary.LittleEndian.Uint64(p[8:])),
		Commit: binary.LittleEndian.Uint64(p[16:]),
	}, nil
}

func decodeSnapshotRef(p []byte) (SnapshotRef, error) {
	if len(p) != snapshotRefBytes {
		return SnapshotRef{}, fmt.Errorf("snapshot ref record of %d bytes, want %d", len(p), snapshotRefBytes)
	}
	if p[16] > 1 {
		return SnapshotRef{}, fmt.Errorf("snapshot ref with unknown flags %#x", p[16])
	}
	return SnapshotRef{
		Index: binary.LittleEndian.Uint64(p[0:]),
		Term:  binary.LittleEndian.Uint64(p[8:]),
		Reset: p[16] == 1,
	}, nil
}

// decodeSegmentHeader returns the version and sequence of a header payload.
func decodeSegmentHeader(p []byte) (version uint16, seq uint64, err error) {
	if len(p) != segmentHeaderBytes || [8]byte(p[0:8]) != segmentMagic {
		return 0, 0, errors.New("not a segment header")
	}
	return binary.LittleEndian.Uint16(p[8:]), binary.LittleEndian.Uint64(p[10:]), nil
}

// checkBatchEnd verifies a BatchEnd payload found at segment offset off.
func checkBatchEnd(p []byte, off int64) error {
	if len(p) != batchEndBytes || [8]byte(p[8:16]) != batchEndMagic {
		return errors.New("malformed batch end")
	}
	if got := binary.LittleEndian.Uint64(p[0:]); got != uint64(off) {
		return fmt.Errorf("batch end claims offset %d", got)
	}
	return nil
}
