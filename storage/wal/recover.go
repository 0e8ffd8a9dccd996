package wal

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/edgekv/edgekv/consensus/raftmsg"
	"github.com/edgekv/edgekv/storage/diskerr"
	"github.com/edgekv/edgekv/storage/vfs"
)

const segmentSuffix = ".wal"

// maxSegmentFileBytes bounds a segment read at recovery: the largest
// segment the writer creates is one batch bounded by the pending limit plus
// a header, far below this.
const maxSegmentFileBytes = 4 << 30

func segmentName(seq uint64) string { return fmt.Sprintf("%016x%s", seq, segmentSuffix) }

func parseSegmentName(name string) (uint64, bool) {
	hex, ok := strings.CutSuffix(name, segmentSuffix)
	if !ok || len(hex) != 16 {
		return 0, false
	}
	seq, err := strconv.ParseUint(hex, 16, 64)
	return seq, err == nil
}

// segment is what the log knows about one segment file.
type segment struct {
	seq uint64
	// maxIndex is the highest entry index written to it (0 if none):
	// removing the segment loses nothing once a snapshot covers it and
	// every earlier segment.
	maxIndex uint64
}

// replayState accumulates the log's content during recovery.
type replayState struct {
	hs       raftmsg.HardState
	snap     SnapshotRef
	entries  []raftmsg.Entry
	segments []segment
}

// pendingRecord is a decoded record of a batch whose BatchEnd is not seen yet.
type pendingRecord struct {
	typ     uint8
	payload []byte
	off     int64
}

// scanResult describes how a segment's records ended.
type scanResult struct {
	validEnd  int64 // offset just past the last complete batch
	tornBytes int64 // bytes past validEnd that were not zero
	hasHeader bool
}

// replaySegments lists dir and replays every segment in order.
func replaySegments(fs vfs.FS, dir string) (*replayState, scanResult, error) {
	names, err := fs.List(dir)
	if err != nil {
		return nil, scanResult{}, fmt.Errorf("wal: list %s: %w", dir, err)
	}
	var seqs []uint64
	for _, name := range names {
		if seq, ok := parseSegmentName(name); ok {
			seqs = append(seqs, seq)
		}
	}
	slices.Sort(seqs)
	st := &replayState{}
	var last scanResult
	for i, seq := range seqs {
		path := filepath.Join(dir, segmentName(seq))
		if i > 0 && seq != seqs[i-1]+1 {
			return nil, scanResult{}, diskerr.Corrupt(filepath.Join(dir, segmentName(seqs[i-1]+1)), 0,
				"segment missing (found %s after %s)", segmentName(seq), segmentName(seqs[i-1]))
		}
		buf, err := vfs.ReadFile(fs, path, maxSegmentFileBytes)
		if err != nil {
			return nil, scanResult{}, fmt.Errorf("wal: read segment: %w", err)
		}
		isLast := i == len(seqs)-1
		res, err := st.scanSegment(buf, path, seq, isLast)
		if err != nil {
			return nil, scanResult{}, err
		}
		last = res
	}
	if err := st.finish(dir); err != nil {
		return nil, scanResult{}, err
	}
	return st, last, nil
}

// scanSegment applies every complete batch of one segment.
func (st *replayState) scanSegment(buf []byte, path string, seq uint64, isLast bool) (scanResult, error) {
	var (
		off       int64
		batchEnd  int64 // offset just past the last BatchEnd
		pending   []pendingRecord
		hasHeader bool
		stopErr   error
	)
	seg := segment{seq: seq}
	for off < int64(len(buf)) {
		typ, payload, size, err := decodeRecord(buf[off:])
		if err != nil {
			stopErr = err
			break
		}
		if !hasHeader {
			if typ != recSegmentHeader {
				stopErr = errors.New("segment does not start with a header")
				break
			}
			version, hseq, err := decodeSegmentHeader(payload)
			if err != nil {
				stopErr = err
				break
			}
			if version > FormatVersion {
				return scanResult{}, fmt.Errorf("wal: %s was written by a newer format (version %d, this binary reads up to %d): %w",
					path, version, FormatVersion, diskerr.ErrMetaMismatch)
			}
			if version == 0 || hseq != seq {
				return scanResult{}, diskerr.Corrupt(path, off, "segment header says version %d, sequence %d", version, hseq)
			}
			hasHeader = true
		} else if typ == recSegmentHeader {
			return scanResult{}, diskerr.Corrupt(path, off, "second segment header")
		}
		if typ == recBatchEnd {
			if err := checkBatchEnd(payload, off); err != nil {
				return scanResult{}, diskerr.Corrupt(path, off, "%v", err)
			}
			for _, r := range pending {
				if err := st.apply(r, path, &seg); err != nil {
					return scanResult{}, err
				}
			}
			pending = pending[:0]
			batchEnd = off + int64(size)
		} else if typ != recSegmentHeader {
			pending = append(pending, pendingRecord{typ: typ, payload: payload, off: off})
		}
		off += int64(size)
	}
	st.segments = append(st.segments, seg)
	res := scanResult{validEnd: batchEnd, hasHeader: hasHeader && batchEnd > 0}
	if !res.hasHeader && !isLast {
		return scanResult{}, diskerr.Corrupt(path, 0, "segment has no complete header batch but is not the last")
	}
	if off >= int64(len(buf)) && len(pending) == 0 {
		return res, nil // ended exactly after a batch
	}
	// The records stopped at off. Past batchEnd there is at most one batch
	// that was never synced, unless a BatchEnd (intact or one bit off) lies
	// at or after the stop: then synced data is damaged.
	if q, ok := findBatchEndCandidate(buf, off); ok {
		if !isLast || !tornOutOfOrder(buf, batchEnd, q) {
			return scanResult{}, diskerr.Corrupt(path, off, "%v in synced data (a batch end follows at offset %d)", describe(stopErr, len(pending)), q)
		}
	}
	tail := buf[batchEnd:]
	res.tornBytes = int64(len(bytes.TrimRight(tail, "\x00")))
	if res.tornBytes == 0 {
		return res, nil // zeros of the preallocated tail
	}
	if !isLast {
		return scanResult{}, diskerr.Corrupt(path, off, "%v in a segment that is not the last", describe(stopErr, len(pending)))
	}
	return res, nil
}

func describe(stopErr error, pendingRecords int) string {
	if stopErr == nil {
		return fmt.Sprintf("%d records without a batch end", pendingRecords)
	}
	return stopErr.Error()
}

// findBatchEndCandidate reports the offset q >= from of a record that is a
// BatchEnd written at q, possibly with one flipped bit in its payload (its
// header may be damaged at will): the 16 payload bytes, own offset q and
// the magic, differ from the expected ones in at most one bit. A single
// flip leaves one half of the magic intact, so it is enough to look where
// either half occurs.
func findBatchEndCandidate(buf []byte, from int64) (int64, bool) {
	for half := 0; half < 2; half++ {
		needle := batchEndMagic[half*4 : half*4+4]
		// Offset of this half of the magic from the record start.
		shift := int64(headerBytes + 8 + half*4)
		pos := from + shift
		for pos < int64(len(buf)) {
			i := bytes.Index(buf[pos:], needle)
			if i < 0 {
				break
			}
			p := pos + int64(i)
			q := p - shift
			if q+batchEndRecordBytes <= int64(len(buf)) && batchEndDistance(buf[q+headerBytes:q+batchEndRecordBytes], q) <= 1 {
				return q, true
			}
			pos = p + 1
		}
	}
	return 0, false
}

// sectorBytes is the unit a disk writes atomically (or not at all).
const sectorBytes = 512

// tornOutOfOrder reports whether the damage is the last batch of the last
// segment written out of order by an interrupted write-back: the batch end
// at q is the last one in buf, and one of the sectors the batch wrote
// before the batch end's sector still reads as zero over the batch's part
// of it (never written: segments are zero-filled). The batch's first
// sector starts with a record checksum, so it is zero only if unwritten.
// Bit rot in synced data leaves no zeroed sector behind, so it is still
// refused; a batch holding a whole sector of zero data that then rots is
// the price (it is treated as torn).
func tornOutOfOrder(buf []byte, batchStart, q int64) bool {
	if _, more := findBatchEndCandidate(buf, q+batchEndRecordBytes); more {
		return false // damage before a later batch: synced data
	}
	markerSector := q / sectorBytes * sectorBytes
	for s := batchStart / sectorBytes * sectorBytes; s < markerSector; s += sectorBytes {
		if allZero(buf[max(s, batchStart) : s+sectorBytes]) {
			return true
		}
	}
	return false
}

// batchEndDistance is the number of bits by which p differs from the
// payload of a BatchEnd at offset q.
func batchEndDistance(p []byte, q int64) int {
	d := bits.OnesCount64(binary.LittleEndian.Uint64(p[0:8]) ^ uint64(q))
	d += bits.OnesCount64(binary.LittleEndian.Uint64(p[8:16]) ^ binary.LittleEndian.Uint64(batchEndMagic[:]))
	return d
}

// apply replays one record of a complete batch.
func (st *replayState) apply(r pendingRecord, path string, seg *segment) error {
	switch r.typ {
	case recEntry:
		e, err := decodeEntry(r.payload)
		if err != nil {
			return diskerr.Corrupt(path, r.off, "%v", err)
		}
		seg.maxIndex = max(seg.maxIndex, e.Index)
		return st.appendEntry(e, path, r.off)
	case recHardState:
		hs, err := decodeHardState(r.payload)
		if err != nil {
			return diskerr.Corrupt(path, r.off, "%v", err)
		}
		st.hs = hs
	case recSnapshotRef:
		ref, err := decodeSnapshotRef(r.payload)
		if err != nil {
			return diskerr.Corrupt(path, r.off, "%v", err)
		}
		st.applySnapshotRef(ref)
	default:
		return diskerr.Corrupt(path, r.off, "unexpected record type %d", r.typ)
	}
	return nil
}

func (st *replayState) applySnapshotRef(ref SnapshotRef) {
	if ref.Reset {
		st.entries = nil
	}
	st.snap = ref
	st.dropThrough(ref.Index)
}

// dropThrough forgets entries at or below index, copying the rest so the
// dropped ones can be collected.
func (st *replayState) dropThrough(index uint64) {
	if len(st.entries) == 0 || st.entries[0].Index > index {
		return
	}
	k := 0
	for k < len(st.entries) && st.entries[k].Index <= index {
		k++
	}
	st.entries = append([]raftmsg.Entry(nil), st.entries[k:]...)
}

// appendEntry adds e, which replaces any entry at or after its index.
func (st *replayState) appendEntry(e raftmsg.Entry, path string, off int64) error {
	if e.Index <= st.snap.Index {
		return nil // covered by the snapshot
	}
	e.Data = append([]byte(nil), e.Data...) // the segment buffer is not kept
	n := len(st.entries)
	if n == 0 {
		st.entries = append(st.entries, e)
		return nil
	}
	first, last := st.entries[0].Index, st.entries[n-1].Index
	switch {
	case e.Index == last+1:
		st.entries = append(st.entries, e)
	case e.Index > last+1:
		return diskerr.Corrupt(path, off, "entry %d follows entry %d", e.Index, last)
	case e.Index > first:
		st.entries = append(st.entries[:e.Index-first], e)
	default:
		st.entries = append(st.entries[:0], e)
	}
	return nil
}

// finish checks that the entries continue the snapshot without a gap.
func (st *replayState) finish(dir string) error {
	st.dropThrough(st.snap.Index)
	if len(st.entries) > 0 && st.entries[0].Index != st.snap.Index+1 {
		return diskerr.Corrupt(dir, 0, "log starts at entry %d but the snapshot ends at %d", st.entries[0].Index, st.snap.Index)
	}
	return nil
}
