// Package snapfile writes and reads edgekv snapshot files: the Raft
// snapshot metadata, the opaque membership blob (members with addresses)
// and the opaque, compressed application payload, all checksummed.
//
// It must never hand out a byte of payload or membership from a file whose
// checksums it has not verified in full first, never allocate more than a
// length it has checked against the file size and its own bounds, and never
// interpret the payload.
//
// # Format (version 1, integers little-endian)
//
//	+----------------------------------------------------------------+
//	| magic "edgekvSN" (8) | version u16 | codec u8 | flags u8 (0)     |
//	| index u64 | term u64 | meta length u32                          |
//	| header CRC-32C u32 (of the 32 bytes before it)                  |  36 bytes
//	+----------------------------------------------------------------+
//	| meta: voters count u32 | voter ids u64... |                     |
//	|       learners count u32 | learner ids u64... |                 |
//	|       membership length u32 | membership bytes                  |
//	+----------------------------------------------------------------+
//	| payload: the application's bytes, compressed by codec           |
//	|          (0 none, 1 snappy framed stream, 2 zstd frame)          |
//	+----------------------------------------------------------------+
//	| trailer: payload length u64 (stored bytes) | raw length u64 |   |
//	|          CRC-32C u32 of every byte before the trailer |          |
//	|          magic "edgekvSE" (8)                                  |  28 bytes
//	+----------------------------------------------------------------+
//
// The header has its own checksum so that lengths are trusted only after
// it matches; the trailer's checksum covers header, meta and payload, so a
// file that was cut short or damaged anywhere fails Verify.
package snapfile

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"

	"github.com/golang/snappy"
	"github.com/klauspost/compress/zstd"

	"github.com/edgekv/edgekv/consensus/raftmsg"
	"github.com/edgekv/edgekv/storage/diskerr"
)

// Version is the format version written by this code.
const Version = 1

const (
	headerBytes  = 36
	trailerBytes = 28
	// MaxMetaBytes bounds the meta section (membership of a cluster of
	// edge hosts is a few KiB).
	MaxMetaBytes = 16 << 20
	// maxMembers bounds voters and learners each.
	maxMembers = 1 << 16
	// maxWindowBytes bounds the zstd decoder's window and so its memory.
	maxWindowBytes = 8 << 20
)

var (
	fileMagic    = [8]byte{'e', 'd', 'g', 'e', 'k', 'v', 'S', 'N'}
	trailerMagic = [8]byte{'e', 'd', 'g', 'e', 'k', 'v', 'S', 'E'}
	castagnoli   = crc32.MakeTable(crc32.Castagnoli)
)

// Codec is a payload compression.
type Codec uint8

const (
	CodecNone Codec = iota
	CodecSnappy
	CodecZstd
	codecCount
)

func (c Codec) String() string {
	switch c {
	case CodecNone:
		return "none"
	case CodecSnappy:
		return "snappy"
	case CodecZstd:
		return "zstd"
	}
	return fmt.Sprintf("Codec(%d)", uint8(c))
}

// ParseCompression maps the --compression flag to a codec: auto is zstd.
func ParseCompression(s string) (Codec, error) {
	switch s {
	case "none":
		return CodecNone, nil
	case "snappy":
		return CodecSnappy, nil
	case "zstd", "auto", "":
		return CodecZstd, nil
	}
	return 0, fmt.Errorf("unknown compression %q (want none, snappy, zstd or auto)", s)
}

// Info is what Verify learned about a snapshot file.
type Info struct {
	Meta       raftmsg.SnapshotMeta
	Membership []byte
	Codec      Codec
	// RawBytes is the uncompressed payload size.
	RawBytes int64
	// payloadOff and payloadBytes locate the stored payload.
	payloadOff, payloadBytes int64
}

// Write writes a snapshot file to w: header, meta, the payload produced by
// writePayload (compressed with codec), trailer. It returns the file size.
func Write(w io.Writer, meta raftmsg.SnapshotMeta, membership []byte, codec Codec, writePayload func(io.Writer) error) (int64, error) {
	if codec >= codecCount {
		return 0, fmt.Errorf("snapfile: unknown codec %d", codec)
	}
	metaBuf, err := encodeMeta(meta.Conf, membership)
	if err != nil {
		return 0, err
	}
	crc := crc32.New(castagnoli)
	out := &countingWriter{w: io.MultiWriter(w, crc)}
	bw := bufio.NewWriterSize(out, 256<<10)
	hdr := make([]byte, headerBytes)
	copy(hdr[0:8], fileMagic[:])
	binary.LittleEndian.PutUint16(hdr[8:], Version)
	hdr[10] = uint8(codec)
	binary.LittleEndian.PutUint64(hdr[12:], meta.Index)
	binary.LittleEndian.PutUint64(hdr[20:], meta.Term)
	binary.LittleEndian.PutUint32(hdr[28:], uint32(len(metaBuf)))
	binary.LittleEndian.PutUint32(hdr[32:], crc32.Checksum(hdr[:32], castagnoli))
	bw.Write(hdr)
	bw.Write(metaBuf)
	if err := bw.Flush(); err != nil {
		return 0, fmt.Errorf("snapfile: write header: %w", err)
	}
	payloadStart := out.n
	raw := &countingWriter{}
	switch codec {
	case CodecNone:
		raw.w = bw
		err = writePayload(raw)
	case CodecSnappy:
		sw := snappy.NewBufferedWriter(bw)
		raw.w = sw
		err = writePayload(raw)
		if cerr := sw.Close(); err == nil {
			err = cerr
		}
	case CodecZstd:
		zw, zerr := zstd.NewWriter(bw, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithWindowSize(maxWindowBytes))
		if zerr != nil {
			return 0, fmt.Errorf("snapfile: zstd: %w", zerr)
		}
		raw.w = zw
		err = writePayload(raw)
		if cerr := zw.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		return 0, fmt.Errorf("snapfile: write payload: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return 0, fmt.Errorf("snapfile: write payload: %w", err)
	}
	tr := make([]byte, trailerBytes)
	binary.LittleEndian.PutUint64(tr[0:], uint64(out.n-payloadStart))
	binary.LittleEndian.PutUint64(tr[8:], uint64(raw.n))
	binary.LittleEndian.PutUint32(tr[16:], crc.Sum32())
	copy(tr[20:], trailerMagic[:])
	if _, err := w.Write(tr); err != nil {
		return 0, fmt.Errorf("snapfile: write trailer: %w", err)
	}
	return out.n + trailerBytes, nil
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

func encodeMeta(conf raftmsg.ConfState, membership []byte) ([]byte, error) {
	if len(conf.Voters) > maxMembers || len(conf.Learners) > maxMembers {
		return nil, fmt.Errorf("snapfile: %d voters, %d learners: too many", len(conf.Voters), len(conf.Learners))
	}
	n := 4 + 8*len(conf.Voters) + 4 + 8*len(conf.Learners) + 4 + len(membership)
	if n > MaxMetaBytes {
		return nil, fmt.Errorf("snapfile: meta of %d bytes exceeds %d", n, MaxMetaBytes)
	}
	b := make([]byte, 0, n)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(conf.Voters)))
	for _, id := range conf.Voters {
		b = binary.LittleEndian.AppendUint64(b, uint64(id))
	}
	b = binary.LittleEndian.AppendUint32(b, uint32(len(conf.Learners)))
	for _, id := range conf.Learners {
		b = binary.LittleEndian.AppendUint64(b, uint64(id))
	}
	b = binary.LittleEndian.AppendUint32(b, uint32(len(membership)))
	return append(b, membership...), nil
}

// decodeMeta parses a meta section; every count is checked against the
// bytes present before anything is allocated.
func decodeMeta(b []byte) (raftmsg.ConfState, []byte, error) {
	var conf raftmsg.ConfState
	ids := func() ([]raftmsg.NodeID, error) {
		if len(b) < 4 {
			return nil, errors.New("meta cut short")
		}
		n := binary.LittleEndian.Uint32(b)
		b = b[4:]
		if n > maxMembers || uint64(n)*8 > uint64(len(b)) {
			return nil, fmt.Errorf("meta claims %d members in %d bytes", n, len(b))
		}
		if n == 0 {
			return nil, nil
		}
		out := make([]raftmsg.NodeID, n)
		for i := range out {
			out[i] = raftmsg.NodeID(binary.LittleEndian.Uint64(b[8*i:]))
		}
		b = b[8*n:]
		return out, nil
	}
	var err error
	if conf.Voters, err = ids(); err != nil {
		return conf, nil, err
	}
	if conf.Learners, err = ids(); err != nil {
		return conf, nil, err
	}
	if len(b) < 4 {
		return conf, nil, errors.New("meta cut short")
	}
	n := binary.LittleEndian.Uint32(b)
	b = b[4:]
	if uint64(n) != uint64(len(b)) {
		return conf, nil, fmt.Errorf("membership of %d bytes in %d", n, len(b))
	}
	return conf, append([]byte(nil), b...), nil
}

// Verify checks a snapshot file of size bytes read through r (name is used
// in errors) and returns what it holds. Every checksum is verified before
// Verify returns, so a nil error means the whole file is intact.
func Verify(r io.ReaderAt, size int64, name string) (*Info, error) {
	if size < headerBytes+trailerBytes {
		return nil, diskerr.Corrupt(name, 0, "snapshot of %d bytes is shorter than its header and trailer", size)
	}
	var hdr [headerBytes]byte
	if _, err := r.ReadAt(hdr[:], 0); err != nil {
		return nil, fmt.Errorf("snapfile: read header of %s: %w", name, err)
	}
	if [8]byte(hdr[0:8]) != fileMagic {
		return nil, diskerr.Corrupt(name, 0, "not a snapshot file")
	}
	if crc32.Checksum(hdr[:32], castagnoli) != binary.LittleEndian.Uint32(hdr[32:]) {
		return nil, diskerr.Corrupt(name, 0, "header checksum mismatch")
	}
	version := binary.LittleEndian.Uint16(hdr[8:])
	if version > Version {
		return nil, fmt.Errorf("snapfile: %s was written by a newer format (version %d, this binary reads up to %d): %w",
			name, version, Version, diskerr.ErrMetaMismatch)
	}
	codec := Codec(hdr[10])
	if version == 0 || codec >= codecCount || hdr[11] != 0 {
		return nil, diskerr.Corrupt(name, 8, "version %d, codec %d, flags %#x", version, codec, hdr[11])
	}
	metaBytes := int64(binary.LittleEndian.Uint32(hdr[28:]))
	if metaBytes > MaxMetaBytes || headerBytes+metaBytes+trailerBytes > size {
		return nil, diskerr.Corrupt(name, 28, "meta of %d bytes in a file of %d", metaBytes, size)
	}
	var tr [trailerBytes]byte
	trailerOff := size - trailerBytes
	if _, err := r.ReadAt(tr[:], trailerOff); err != nil {
		return nil, fmt.Errorf("snapfile: read trailer of %s: %w", name, err)
	}
	if [8]byte(tr[20:28]) != trailerMagic {
		return nil, diskerr.Corrupt(name, trailerOff, "trailer missing: file incomplete")
	}
	payloadBytes := int64(binary.LittleEndian.Uint64(tr[0:]))
	rawBytes := binary.LittleEndian.Uint64(tr[8:])
	if payloadBytes != trailerOff-headerBytes-metaBytes || rawBytes > 1<<62 {
		return nil, diskerr.Corrupt(name, trailerOff, "trailer claims %d payload bytes, file has %d", payloadBytes, trailerOff-headerBytes-metaBytes)
	}
	crc := crc32.New(castagnoli)
	if err := checksumRange(crc, r, 0, trailerOff); err != nil {
		return nil, fmt.Errorf("snapfile: read %s: %w", name, err)
	}
	if crc.Sum32() != binary.LittleEndian.Uint32(tr[16:]) {
		return nil, diskerr.Corrupt(name, headerBytes, "checksum mismatch")
	}
	metaBuf := make([]byte, metaBytes)
	if _, err := r.ReadAt(metaBuf, headerBytes); err != nil {
		return nil, fmt.Errorf("snapfile: read meta of %s: %w", name, err)
	}
	conf, membership, err := decodeMeta(metaBuf)
	if err != nil {
		return nil, diskerr.Corrupt(name, headerBytes, "%v", err)
	}
	return &Info{
		Meta: raftmsg.SnapshotMeta{
			Index: binary.LittleEndian.Uint64(hdr[12:]),
			Term:  binary.LittleEndian.Uint64(hdr[20:]),
			Conf:  conf,
		},
		Membership:   membership,
		Codec:        codec,
		RawBytes:     int64(rawBytes),
		payloadOff:   headerBytes + metaBytes,
		payloadBytes: payloadBytes,
	}, nil
}

func checksumRange(h hash.Hash32, r io.ReaderAt, off, n int64) error {
	buf := make([]byte, min(n, 1<<20))
	for n > 0 {
		m := min(n, int64(len(buf)))
		if _, err := r.ReadAt(buf[:m], off); err != nil {
			return err
		}
		h.Write(buf[:m])
		off += m
		n -= m
	}
	return nil
}

// Payload returns a reader of the uncompressed payload of a verified file.
// It fails with ErrCorrupt if the payload does not decompress to exactly
// RawBytes.
func (info *Info) Payload(r io.ReaderAt, name string) (io.ReadCloser, error) {
	stored := io.NewSectionReader(r, info.payloadOff, info.payloadBytes)
	var (
		src     io.Reader
		closeFn func()
	)
	switch info.Codec {
	case CodecNone:
		src = stored
	case CodecSnappy:
		src = snappy.NewReader(stored)
	case CodecZstd:
		zr, err := zstd.NewReader(stored, zstd.WithDecoderConcurrency(1),
			zstd.WithDecoderMaxWindow(maxWindowBytes), zstd.WithDecoderMaxMemory(2*maxWindowBytes))
		if err != nil {
			return nil, fmt.Errorf("snapfile: zstd: %w", err)
		}
		src, closeFn = zr, zr.Close
	default:
		return nil, diskerr.Corrupt(name, 10, "unknown codec %d", info.Codec)
	}
	return &exactReader{src: src, remaining: info.RawBytes, name: name, closeFn: closeFn}, nil
}

// exactReader passes on exactly the declared number of bytes and turns any
// other amount into a corruption error.
type exactReader struct {
	src       io.Reader
	remaining int64
	name      string
	closeFn   func()
}

func (e *exactReader) Read(p []byte) (int, error) {
	if e.remaining == 0 {
		var one [1]byte
		if n, err := e.src.Read(one[:]); n > 0 || (err != nil && err != io.EOF) {
			return 0, diskerr.Corrupt(e.name, 0, "payload longer than declared (%v)", err)
		}
		return 0, io.EOF
	}
	if int64(len(p)) > e.remaining {
		p = p[:e.remaining]
	}
	n, err := e.src.Read(p)
	e.remaining -= int64(n)
	if err == io.EOF && e.remaining > 0 {
		return n, diskerr.Corrupt(e.name, 0, "payload %d bytes shorter than declared", e.remaining)
	}
	if err != nil && err != io.EOF {
		return n, diskerr.Corrupt(e.name, 0, "payload does not decompress: %v", err)
	}
	return n, nil
}

func (e *exactReader) Close() error {
	if e.closeFn != nil {
		e.closeFn()
	}
	return nil
}
