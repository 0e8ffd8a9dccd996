package frame

import (
	"bufio"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"time"

	"github.com/golang/snappy"
	"github.com/klauspost/compress/zstd"

	"github.com/edgekv/edgekv/zerocopy"
)

// WriterConfig configures a Writer.
type WriterConfig struct {
	Limits Limits
	// Codec compresses payloads of at least MinCompressBytes; a compressed
	// payload is sent only when smaller than the raw one.
	Codec            Codec
	MinCompressBytes int
	// ZstdLevel is used when Codec is CodecZstd.
	ZstdLevel zstd.EncoderLevel
}

// Writer writes records as frames to one stream. Not safe for concurrent
// use: one goroutine owns a connection's writer.
type Writer struct {
	w       io.Writer
	cfg     WriterConfig
	zenc    *zstd.Encoder
	scratch []byte // compressed output; capacity bounds one frame's worst case
	hdr     [HeaderBytes]byte
	vec     [2][]byte
	bufs    net.Buffers
	pieces  [][]byte // WriteSegments' iovecs, reused
	gather  []byte   // WriteSegments' contiguous copy when compressing

	deadliner    interface{ SetWriteDeadline(time.Time) error }
	frameTimeout time.Duration

	// RawBytes and WireBytes count payload bytes before and after
	// compression (observability; read by the owning goroutine only).
	RawBytes, WireBytes uint64
}

// NewWriter returns a writer on w.
func NewWriter(w io.Writer, cfg WriterConfig) (*Writer, error) {
	if cfg.Limits.MaxFrameBytes <= 0 || cfg.Limits.MaxRecordBytes < cfg.Limits.MaxFrameBytes {
		return nil, fmt.Errorf("frame: bad limits %+v", cfg.Limits)
	}
	if !cfg.Codec.Valid() {
		return nil, fmt.Errorf("frame: unknown codec %d", cfg.Codec)
	}
	fw := &Writer{w: w, cfg: cfg}
	if cfg.Codec != CodecNone {
		fw.scratch = make([]byte, snappy.MaxEncodedLen(cfg.Limits.MaxFrameBytes))
	}
	if cfg.Codec == CodecZstd {
		level := cfg.ZstdLevel
		if level == 0 {
			level = zstd.SpeedDefault
		}
		enc, err := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1), zstd.WithEncoderLevel(level),
			zstd.WithEncoderCRC(false), // frames carry their own CRC
			zstd.WithWindowSize(min(zstd.MaxWindowSize, max(zstd.MinWindowSize, ceilPow2(cfg.Limits.MaxFrameBytes)))))
		if err != nil {
			return nil, fmt.Errorf("frame: zstd encoder: %w", err)
		}
		fw.zenc = enc
	}
	return fw, nil
}

func ceilPow2(n int) int {
	p := 1
	for p < n {
		p <<= 1
	}
	return p
}

// SetFrameTimeout makes every frame's write finish within d (the deadline
// is set on c before each frame), so a large record on a slow link gets
// time in proportion to its size while a stuck peer is still detected.
func (w *Writer) SetFrameTimeout(c interface{ SetWriteDeadline(time.Time) error }, d time.Duration) {
	w.deadliner, w.frameTimeout = c, d
}

func (w *Writer) armDeadline() {
	if w.deadliner != nil {
		w.deadliner.SetWriteDeadline(time.Now().Add(w.frameTimeout))
	}
}

// Close releases the compressor. It does not close the stream.
func (w *Writer) Close() {
	if w.zenc != nil {
		w.zenc.Close()
		w.zenc = nil
	}
}

// WriteRecord writes payload as one record of type t: one frame, or
// several frames of at most MaxFrameBytes each when it is larger.
func (w *Writer) WriteRecord(t Type, payload []byte) error {
	if len(payload) > w.cfg.Limits.MaxRecordBytes {
		return fmt.Errorf("frame: record of %d bytes exceeds limit %d", len(payload), w.cfg.Limits.MaxRecordBytes)
	}
	recordLen := uint32(len(payload))
	for first := true; first || len(payload) > 0; first = false {
		n := min(len(payload), w.cfg.Limits.MaxFrameBytes)
		if err := w.writeFrame(t, payload[:n], recordLen, n < len(payload)); err != nil {
			return err
		}
		payload = payload[n:]
	}
	return nil
}

// WriteSegments writes the concatenation of segs as one record. A writer
// without compression never concatenates them: each frame goes out as one
// writev of the header and the pieces of segs it covers (entry data is sent
// straight from where the caller keeps it). A compressing writer gathers
// them first, since the compressors need contiguous input.
func (w *Writer) WriteSegments(t Type, segs [][]byte) error {
	total := 0
	for _, s := range segs {
		total += len(s)
	}
	if total > w.cfg.Limits.MaxRecordBytes {
		return fmt.Errorf("frame: record of %d bytes exceeds limit %d", total, w.cfg.Limits.MaxRecordBytes)
	}
	if w.cfg.Codec != CodecNone {
		w.gather = w.gather[:0]
		for _, s := range segs {
			w.gather = append(w.gather, s...)
		}
		return w.WriteRecord(t, w.gather)
	}
	si, off, remaining := 0, 0, total
	for first := true; first || remaining > 0; first = false {
		n := min(remaining, w.cfg.Limits.MaxFrameBytes)
		w.pieces = append(w.pieces[:0], nil) // slot 0: the header
		var crc uint32
		for need := n; need > 0; {
			s := segs[si][off:]
			take := min(len(s), need)
			if take > 0 {
				w.pieces = append(w.pieces, s[:take])
				crc = crc32.Update(crc, castagnoli, s[:take])
			}
			need -= take
			if off += take; off == len(segs[si]) {
				si, off = si+1, 0
			}
		}
		remaining -= n
		PutHeader(&w.hdr, Header{Type: t, More: remaining > 0, WireLen: uint32(n), RawLen: uint32(n), RecordLen: uint32(total), PayloadCRC: crc})
		w.RawBytes += uint64(n)
		w.WireBytes += uint64(n)
		w.pieces[0] = w.hdr[:]
		w.bufs = w.pieces
		w.armDeadline()
		_, err := w.bufs.WriteTo(w.w)
		clear(w.pieces) // do not pin the caller's data
		if err != nil {
			return fmt.Errorf("frame: write: %w", err)
		}
	}
	return nil
}

func (w *Writer) writeFrame(t Type, raw []byte, recordLen uint32, more bool) error {
	h := Header{Type: t, More: more, RawLen: uint32(len(raw)), RecordLen: recordLen}
	wire := w.maybeCompress(raw, &h)
	h.WireLen = uint32(len(wire))
	h.PayloadCRC = Checksum(wire)
	PutHeader(&w.hdr, h)
	w.RawBytes += uint64(len(raw))
	w.WireBytes += uint64(len(wire))
	w.vec[0], w.vec[1] = w.hdr[:], wire
	w.bufs = w.vec[:]
	if len(wire) == 0 {
		w.bufs = w.vec[:1]
	}
	w.armDeadline()
	_, err := w.bufs.WriteTo(w.w) // writev on a *net.TCPConn
	w.vec[1] = nil                // do not pin the caller's payload
	if err != nil {
		return fmt.Errorf("frame: write: %w", err)
	}
	return nil
}

// maybeCompress returns the bytes to send and sets h.Codec accordingly.
func (w *Writer) maybeCompress(raw []byte, h *Header) []byte {
	if w.cfg.Codec == CodecNone || len(raw) < w.cfg.MinCompressBytes || len(raw) == 0 {
		return raw
	}
	var out []byte
	switch w.cfg.Codec {
	case CodecSnappy:
		out = snappy.Encode(w.scratch[:cap(w.scratch)], raw)
	case CodecZstd:
		out = w.zenc.EncodeAll(raw, w.scratch[:0])
	}
	if len(out) >= len(raw) {
		return raw // does not save space
	}
	h.Codec = w.cfg.Codec
	return out
}

// Reader reads records from one stream into pooled buffers. Not safe for
// concurrent use.
type Reader struct {
	r    *bufio.Reader
	lim  Limits
	pool *zerocopy.Pool
	zdec *zstd.Decoder
	hdr  [HeaderBytes]byte

	deadliner    interface{ SetReadDeadline(time.Time) error }
	frameTimeout time.Duration
}

// SetFrameTimeout makes every frame arrive within d of the previous one
// (the deadline is set on c before each frame): an idle or stuck peer is
// detected, a large record on a slow link is not cut.
func (r *Reader) SetFrameTimeout(c interface{ SetReadDeadline(time.Time) error }, d time.Duration) {
	r.deadliner, r.frameTimeout = c, d
}

// ReadBufferBytes is the size of the reader's bufio buffer: headers and
// small frames are read in few system calls, large payloads go straight
// into the pooled record buffer.
const ReadBufferBytes = 64 << 10

// NewReader returns a reader on r. pool must serve records up to
// lim.MaxRecordBytes.
func NewReader(r io.Reader, lim Limits, pool *zerocopy.Pool) (*Reader, error) {
	if pool.MaxBytes() < lim.MaxRecordBytes || lim.MaxFrameBytes <= 0 || lim.MaxRecordBytes < lim.MaxFrameBytes {
		return nil, fmt.Errorf("frame: bad limits %+v for a pool of at most %d bytes", lim, pool.MaxBytes())
	}
	return &Reader{r: bufio.NewReaderSize(r, ReadBufferBytes), lim: lim, pool: pool}, nil
}

// zstdDecoder creates the decompressor on the first zstd frame: most
// connections never see one.
func (r *Reader) zstdDecoder() (*zstd.Decoder, error) {
	if r.zdec != nil {
		return r.zdec, nil
	}
	dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1),
		zstd.WithDecoderMaxMemory(uint64(r.lim.MaxFrameBytes)), zstd.WithDecodeAllCapLimit(true),
		zstd.WithDecoderMaxWindow(uint64(max(zstd.MinWindowSize, ceilPow2(r.lim.MaxFrameBytes)))))
	if err != nil {
		return nil, fmt.Errorf("frame: zstd decoder: %w", err)
	}
	r.zdec = dec
	return dec, nil
}

// Close releases the decompressor. It does not close the stream.
func (r *Reader) Close() {
	if r.zdec != nil {
		r.zdec.Close()
		r.zdec = nil
	}
}

// ReadRecord reads the next record. On success the caller owns buf (which
// holds exactly the record's bytes) and must Release it. Errors wrap
// ErrCorrupt for bad input, or the stream's error (io.EOF on a clean end
// before a header, io.ErrUnexpectedEOF inside a frame).
func (r *Reader) ReadRecord() (Type, *zerocopy.Buffer, error) {
	var (
		buf  *zerocopy.Buffer
		typ  Type
		rec  uint32
		fill uint32
	)
	fail := func(err error) (Type, *zerocopy.Buffer, error) {
		if buf != nil {
			buf.Release()
		}
		return TypeInvalid, nil, err
	}
	for {
		if r.deadliner != nil {
			r.deadliner.SetReadDeadline(time.Now().Add(r.frameTimeout))
		}
		if _, err := io.ReadFull(r.r, r.hdr[:]); err != nil {
			if err == io.EOF && buf != nil {
				err = io.ErrUnexpectedEOF
			}
			return fail(err)
		}
		h, err := DecodeHeader(r.hdr[:], r.lim)
		if err != nil {
			return fail(err)
		}
		if buf == nil {
			typ, rec = h.Type, h.RecordLen
			buf = r.pool.Get(int(rec))
		} else if h.Type != typ || h.RecordLen != rec {
			return fail(fmt.Errorf("%w: continued frame of type %d record %d inside type %d record %d", ErrCorrupt, h.Type, h.RecordLen, typ, rec))
		}
		if uint64(fill)+uint64(h.RawLen) > uint64(rec) {
			return fail(fmt.Errorf("%w: frames overflow their record of %d bytes", ErrCorrupt, rec))
		}
		dst := buf.Bytes()[fill : fill+h.RawLen : fill+h.RawLen]
		if err := r.readPayload(h, dst); err != nil {
			return fail(err)
		}
		fill += h.RawLen
		if !h.More {
			if fill != rec {
				return fail(fmt.Errorf("%w: record ends after %d of %d bytes", ErrCorrupt, fill, rec))
			}
			return typ, buf, nil
		}
	}
}

func (r *Reader) readPayload(h Header, dst []byte) error {
	if h.Codec == CodecNone {
		if _, err := io.ReadFull(r.r, dst); err != nil {
			return fmt.Errorf("frame: payload: %w", noEOF(err))
		}
		if got := Checksum(dst); got != h.PayloadCRC {
			return fmt.Errorf("%w: payload checksum %#x, want %#x", ErrCorrupt, got, h.PayloadCRC)
		}
		return nil
	}
	// WireLen < RawLen <= MaxFrameBytes (DecodeHeader), so this is bounded.
	wire := r.pool.Get(int(h.WireLen))
	defer wire.Release()
	src := wire.Bytes()
	if _, err := io.ReadFull(r.r, src); err != nil {
		return fmt.Errorf("frame: payload: %w", noEOF(err))
	}
	if got := Checksum(src); got != h.PayloadCRC {
		return fmt.Errorf("%w: payload checksum %#x, want %#x", ErrCorrupt, got, h.PayloadCRC)
	}
	switch h.Codec {
	case CodecSnappy:
		n, err := snappy.DecodedLen(src)
		if err != nil || n != len(dst) {
			return fmt.Errorf("%w: snappy payload of %d bytes for %d (%v)", ErrCorrupt, n, len(dst), err)
		}
		out, err := snappy.Decode(dst, src)
		if err != nil || len(out) != len(dst) || &out[0] != &dst[0] {
			return fmt.Errorf("%w: snappy: %v", ErrCorrupt, err)
		}
	case CodecZstd:
		dec, err := r.zstdDecoder()
		if err != nil {
			return err
		}
		out, err := dec.DecodeAll(src, dst[:0])
		if err != nil || len(out) != len(dst) || &out[0] != &dst[0] {
			return fmt.Errorf("%w: zstd payload decoded to %d of %d bytes: %v", ErrCorrupt, len(out), len(dst), err)
		}
	}
	return nil
}

func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}
