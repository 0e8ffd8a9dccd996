package kv

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"unicode/utf8"
	"unsafe"
)

// SnapshotVersion is the format version of WriteSnapshot's output.
const SnapshotVersion = 1

var snapshotMagic = [8]byte{'E', 'K', 'V', 'S', 'N', 'A', 'P', 0}

// snapshotHeaderBytes: magic, version, seven u64 fields, header CRC.
const snapshotHeaderBytes = 8 + 4 + 7*8 + 4

// maxCounter bounds the applied index, the revision and the idempotency
// sequence read from a snapshot.
const maxCounter = 1 << 63

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ErrCorruptSnapshot wraps every error of Restore caused by the input.
var ErrCorruptSnapshot = errors.New("corrupt snapshot")

// snapWriter writes through a buffer, folding every byte into a CRC; the
// first error sticks.
type snapWriter struct {
	w   *bufio.Writer
	crc uint32
	err error
	tmp [binary.MaxVarintLen64]byte
}

func (s *snapWriter) write(b []byte) {
	if s.err != nil {
		return
	}
	s.crc = crc32.Update(s.crc, castagnoli, b)
	_, s.err = s.w.Write(b)
}

// stringBytes views k as bytes for a writer that only reads them.
func stringBytes(k string) []byte { return unsafe.Slice(unsafe.StringData(k), len(k)) }

func (s *snapWriter) uvarint(v uint64) { s.write(binary.AppendUvarint(s.tmp[:0], v)) }
func (s *snapWriter) u64(v uint64)     { s.write(binary.LittleEndian.AppendUint64(s.tmp[:0], v)) }

// WriteSnapshot serializes the view to w in the format drawn in the
// package doc. The view is immutable, so the apply loop goes on meanwhile.
func (v *View) WriteSnapshot(w io.Writer) error {
	s := &snapWriter{w: bufio.NewWriterSize(w, 64<<10)}
	st := &v.st
	hdr := make([]byte, 0, snapshotHeaderBytes)
	hdr = append(hdr, snapshotMagic[:]...)
	hdr = binary.LittleEndian.AppendUint32(hdr, SnapshotVersion)
	for _, f := range [...]uint64{st.applied, st.revision, uint64(st.lastTsNs), st.idemSeq,
		uint64(st.tree.Len()), uint64(st.idemBySeq.Len()), st.sizeBytes} {
		hdr = binary.LittleEndian.AppendUint64(hdr, f)
	}
	hdr = binary.LittleEndian.AppendUint32(hdr, crc32.Checksum(hdr, castagnoli))
	if len(hdr) != snapshotHeaderBytes {
		panic("kv: snapshot header size")
	}
	if _, err := s.w.Write(hdr); err != nil {
		return fmt.Errorf("kv: write snapshot header: %w", err)
	}
	st.tree.Scan(func(it item) bool {
		s.uvarint(uint64(it.keyBytes))
		s.write(stringBytes(it.key()))
		s.uvarint(it.rev)
		s.uvarint(uint64(it.valueBytes))
		s.write(it.value())
		return s.err == nil
	})
	st.idemBySeq.Scan(func(r *idemRecord) bool {
		s.uvarint(uint64(len(r.key)))
		s.write(stringBytes(r.key))
		s.write(r.fp[:])
		s.uvarint(r.seq)
		s.u64(uint64(r.expiresNs))
		s.write([]byte{byte(r.out.status)})
		s.uvarint(r.out.revision)
		s.uvarint(r.out.deleted)
		s.uvarint(uint64(r.out.failedCount))
		s.uvarint(uint64(len(r.out.failed)))
		for _, f := range r.out.failed {
			s.uvarint(uint64(f))
		}
		return s.err == nil
	})
	if s.err != nil {
		return fmt.Errorf("kv: write snapshot: %w", s.err)
	}
	var trailer [4]byte
	binary.LittleEndian.PutUint32(trailer[:], s.crc)
	if _, err := s.w.Write(trailer[:]); err != nil {
		return fmt.Errorf("kv: write snapshot trailer: %w", err)
	}
	if err := s.w.Flush(); err != nil {
		return fmt.Errorf("kv: write snapshot: %w", err)
	}
	return nil
}

// snapReader reads from a buffer, folding every byte into a CRC.
type snapReader struct {
	r       *bufio.Reader
	crc     uint32
	one     [1]byte
	readErr error // the reader's last error, as opposed to a format error
}

func corruptf(format string, args ...any) error {
	return fmt.Errorf("kv: restore: "+format+": %w", append(args, ErrCorruptSnapshot)...)
}

// readErr classifies a read error: input that ends early is a corrupt
// snapshot; any other error is the reader's (an I/O failure) and is
// passed on as such, so the caller does not blame the data.
func readErr(what string, err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return corruptf("%s: %v", what, err)
	}
	return fmt.Errorf("kv: restore: read %s: %w", what, err)
}

// ReadByte makes snapReader an io.ByteReader for binary.ReadUvarint.
func (s *snapReader) ReadByte() (byte, error) {
	b, err := s.r.ReadByte()
	if err != nil {
		s.readErr = err
		return 0, err
	}
	s.one[0] = b
	s.crc = crc32.Update(s.crc, castagnoli, s.one[:])
	return b, nil
}

func (s *snapReader) uvarint(what string) (uint64, error) {
	v, err := binary.ReadUvarint(s)
	switch {
	case err == nil:
		return v, nil
	case s.readErr != nil:
		return 0, readErr(what, s.readErr)
	default:
		return 0, corruptf("%s: %v", what, err) // overlong varint
	}
}

// bytesN reads a length (refused above maxBytes before allocating) and
// that many bytes into a new slice.
func (s *snapReader) bytesN(what string, minBytes, maxBytes uint64) ([]byte, error) {
	n, err := s.uvarint(what + " length")
	if err != nil {
		return nil, err
	}
	if n < minBytes || n > maxBytes {
		return nil, corruptf("%s of %d bytes outside [%d, %d]", what, n, minBytes, maxBytes)
	}
	// Up to eagerBytes is allocated at once; beyond, the buffer doubles
	// only as data arrives, so a lying length costs at most twice what the
	// input really holds.
	const eagerBytes = 64 << 10
	b := make([]byte, 0, min(n, eagerBytes))
	for uint64(len(b)) < n {
		if len(b) == cap(b) {
			grown := make([]byte, len(b), min(n, 2*uint64(cap(b))))
			copy(grown, b)
			b = grown
		}
		chunk := b[len(b):cap(b)]
		if err := s.full(what, chunk); err != nil {
			return nil, err
		}
		b = b[:cap(b)]
	}
	return b, nil
}

func (s *snapReader) full(what string, b []byte) error {
	if _, err := io.ReadFull(s.r, b); err != nil {
		return readErr(what, err)
	}
	s.crc = crc32.Update(s.crc, castagnoli, b)
	return nil
}

type snapshotHeader struct {
	applied, revision uint64
	lastTsNs          int64
	idemSeq           uint64
	keyCount          uint64
	idemCount         uint64
	sizeBytes         uint64
}

func readSnapshotHeader(r io.Reader) (snapshotHeader, error) {
	var h snapshotHeader
	var b [snapshotHeaderBytes]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return h, readErr("header", err)
	}
	if !bytes.Equal(b[:8], snapshotMagic[:]) {
		return h, corruptf("bad magic %q", b[:8])
	}
	crcAt := snapshotHeaderBytes - 4
	if got, want := crc32.Checksum(b[:crcAt], castagnoli), binary.LittleEndian.Uint32(b[crcAt:]); got != want {
		return h, corruptf("header checksum %08x, want %08x", got, want)
	}
	if v := binary.LittleEndian.Uint32(b[8:]); v != SnapshotVersion {
		return h, corruptf("version %d, want %d", v, SnapshotVersion)
	}
	f := func(i int) uint64 { return binary.LittleEndian.Uint64(b[12+8*i:]) }
	h = snapshotHeader{applied: f(0), revision: f(1), lastTsNs: int64(f(2)), idemSeq: f(3),
		keyCount: f(4), idemCount: f(5), sizeBytes: f(6)}
	// Counters that apply increments must be far from wrapping: 2^63
	// writes is out of reach, so a larger value is damage.
	if h.applied >= maxCounter || h.revision >= maxCounter || h.idemSeq >= maxCounter {
		return h, corruptf("counter beyond 2^63 (applied %d, revision %d, seq %d)", h.applied, h.revision, h.idemSeq)
	}
	if h.lastTsNs < 0 {
		return h, corruptf("negative clock %d", h.lastTsNs)
	}
	return h, nil
}

// readSnapshot decodes a snapshot into a fresh state, checking every
// bound, order and count, the declared size and both checksums. It
// allocates nothing whose size comes from the input before bounding it.
func readSnapshot(r io.Reader) (state, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	h, err := readSnapshotHeader(br)
	if err != nil {
		return state{}, err
	}
	st := newState()
	st.applied, st.revision, st.lastTsNs, st.idemSeq = h.applied, h.revision, h.lastTsNs, h.idemSeq
	s := &snapReader{r: br}
	// The counts are only loop bounds: each record consumes input, so a
	// lying count ends at EOF, not in an allocation.
	prevKey := ""
	for i := uint64(0); i < h.keyCount; i++ {
		key, err := s.bytesN("key", 1, MaxKeyBytes)
		if err != nil {
			return state{}, fmt.Errorf("key %d: %w", i, err)
		}
		if !utf8.Valid(key) {
			return state{}, corruptf("key %d is not UTF-8", i)
		}
		if i > 0 && string(key) <= prevKey {
			return state{}, corruptf("key %d out of order", i)
		}
		rev, err := s.uvarint("revision")
		if err != nil {
			return state{}, err
		}
		if rev == 0 || rev > h.revision {
			return state{}, corruptf("key %d revision %d outside [1, %d]", i, rev, h.revision)
		}
		value, err := s.bytesN("value", 0, MaxValueBytesCeiling)
		if err != nil {
			return state{}, fmt.Errorf("key %d: %w", i, err)
		}
		it := newItem(key, value, rev) // one buffer: key, then value
		st.tree.Load(it)
		st.sizeBytes += itemSize(int(it.keyBytes), int(it.valueBytes))
		prevKey = it.key()
	}
	if st.sizeBytes != h.sizeBytes {
		return state{}, corruptf("size %d bytes, header says %d", st.sizeBytes, h.sizeBytes)
	}
	var prevSeq uint64
	for i := uint64(0); i < h.idemCount; i++ {
		rec, err := s.idemRecord()
		if err != nil {
			return state{}, fmt.Errorf("idempotency record %d: %w", i, err)
		}
		if rec.seq <= prevSeq || rec.seq > h.idemSeq {
			return state{}, corruptf("idempotency record %d seq %d out of order", i, rec.seq)
		}
		if rec.out.revision > h.revision {
			return state{}, corruptf("idempotency record %d revision %d after the store's", i, rec.out.revision)
		}
		prevSeq = rec.seq
		if _, dup := st.idemByKey.Set(rec); dup {
			return state{}, corruptf("idempotency key of record %d repeated", i)
		}
		st.idemBySeq.Load(rec)
	}
	want := s.crc
	var trailer [4]byte
	if _, err := io.ReadFull(br, trailer[:]); err != nil {
		return state{}, readErr("trailer", err)
	}
	if got := binary.LittleEndian.Uint32(trailer[:]); got != want {
		return state{}, corruptf("body checksum %08x, want %08x", got, want)
	}
	return st, nil
}

func (s *snapReader) idemRecord() (*idemRecord, error) {
	key, err := s.bytesN("key", 1, MaxIdempotencyKeyBytes)
	if err != nil {
		return nil, err
	}
	rec := &idemRecord{key: string(key)}
	if err := s.full("fingerprint", rec.fp[:]); err != nil {
		return nil, err
	}
	if rec.seq, err = s.uvarint("seq"); err != nil {
		return nil, err
	}
	var b [9]byte // expiry and status
	if err := s.full("expiry", b[:]); err != nil {
		return nil, err
	}
	rec.expiresNs = int64(binary.LittleEndian.Uint64(b[:8]))
	rec.out.status = Status(b[8])
	if !rec.out.remembered() {
		return nil, corruptf("status %v is never remembered", rec.out.status)
	}
	if rec.out.revision, err = s.uvarint("revision"); err != nil {
		return nil, err
	}
	if rec.out.deleted, err = s.uvarint("deleted"); err != nil {
		return nil, err
	}
	failedCount, err := s.uvarint("failed count")
	if err != nil {
		return nil, err
	}
	n, err := s.uvarint("failed length")
	if err != nil {
		return nil, err
	}
	if failedCount > MaxBatchOpsCeiling || n > min(failedCount, MaxRememberedFailed) {
		return nil, corruptf("%d failed ops remembered of %d", n, failedCount)
	}
	if failedCount > 0 && rec.out.status != StatusPreconditionFailed {
		return nil, corruptf("failed ops with status %v", rec.out.status)
	}
	rec.out.failedCount = uint32(failedCount)
	if n > 0 {
		rec.out.failed = make([]uint32, n)
		for j := range rec.out.failed {
			f, err := s.uvarint("failed index")
			if err != nil {
				return nil, err
			}
			if f >= MaxBatchOpsCeiling || (j > 0 && uint32(f) <= rec.out.failed[j-1]) {
				return nil, corruptf("failed index %d", f)
			}
			rec.out.failed[j] = uint32(f)
		}
	}
	return rec, nil
}

// Restore replaces the machine's state with the snapshot read from r
// (which it may read past the snapshot's end: buffered) and publishes it.
// On error the machine is unchanged.
func (m *Machine) Restore(r io.Reader) error {
	st, err := readSnapshot(r)
	if err != nil {
		return err
	}
	m.st = st
	m.dataDirty, m.idemDirty = true, true
	// A lowered IdempotencyMaxKeys takes effect now, oldest first.
	for m.st.idemBySeq.Len() > m.cfg.IdempotencyMaxKeys {
		oldest, _ := m.st.idemBySeq.Min()
		m.forgetIdem(oldest)
	}
	m.Publish()
	return nil
}
