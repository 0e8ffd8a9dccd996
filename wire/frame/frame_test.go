package frame

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/edgekv/edgekv/zerocopy"
)

var testLimits = Limits{MaxFrameBytes: 64 << 10, MaxRecordBytes: 1 << 20}

func newTestPool() *zerocopy.Pool { return zerocopy.NewPool(4096, 1<<20, 1<<20) }

func compressible(n int) []byte {
	b := make([]byte, 0, n)
	for i := 0; len(b) < n; i++ {
		b = append(b, `{"key":"user/`...)
		b = binary.AppendUvarint(b, uint64(i%97))
		b = append(b, `","value":"aaaaaaaaaaaaaaaa"},`...)
	}
	return b[:n]
}

func random(n int, seed uint64) []byte {
	var key [32]byte
	binary.LittleEndian.PutUint64(key[:], seed)
	b := make([]byte, n)
	rand.NewChaCha8(key).Read(b)
	return b
}

func writeAll(t testing.TB, codec Codec, records ...[]byte) []byte {
	t.Helper()
	var out bytes.Buffer
	w, err := NewWriter(&out, WriterConfig{Limits: testLimits, Codec: codec, MinCompressBytes: 256})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	for _, r := range records {
		if err := w.WriteRecord(TypeBatch, r); err != nil {
			t.Fatal(err)
		}
	}
	return out.Bytes()
}

func TestRoundTripEveryCodec(t *testing.T) {
	records := [][]byte{
		nil, {1}, compressible(100), compressible(5000), random(5000, 1),
		compressible(testLimits.MaxFrameBytes), random(3*testLimits.MaxFrameBytes+17, 2), // split over frames
		compressible(testLimits.MaxRecordBytes),
	}
	for _, codec := range []Codec{CodecNone, CodecSnappy, CodecZstd} {
		t.Run(codec.String(), func(t *testing.T) {
			stream := writeAll(t, codec, records...)
			pool := newTestPool()
			r, err := NewReader(bytes.NewReader(stream), testLimits, pool)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			for i, want := range records {
				typ, buf, err := r.ReadRecord()
				if err != nil {
					t.Fatalf("record %d: %v", i, err)
				}
				if typ != TypeBatch || !bytes.Equal(buf.Bytes(), want) {
					t.Fatalf("record %d: type %d, %d bytes, want %d bytes", i, typ, len(buf.Bytes()), len(want))
				}
				buf.Release()
			}
			if _, _, err := r.ReadRecord(); err != io.EOF {
				t.Fatalf("after the last record: %v, want io.EOF", err)
			}
			if pool.Outstanding() != 0 {
				t.Fatalf("%d buffers leaked", pool.Outstanding())
			}
		})
	}
}

// TestWriteSegmentsMatchesWriteRecord: a record written from segments
// (with and without compression, split over frames or not) reads back as
// the concatenation, and uncompressed it is byte-identical to WriteRecord.
func TestWriteSegmentsMatchesWriteRecord(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 9))
	for _, codec := range []Codec{CodecNone, CodecSnappy, CodecZstd} {
		rounds := 20
		if codec != CodecNone {
			rounds = 4 // the compressors gather first: only the reassembly is new
		}
		for range rounds {
			var segs [][]byte
			var whole []byte
			for range r.IntN(8) {
				s := random(r.IntN(3*testLimits.MaxFrameBytes/4), r.Uint64())
				if r.IntN(3) == 0 {
					s = compressible(r.IntN(40000))
				}
				if r.IntN(5) == 0 {
					s = nil
				}
				segs = append(segs, s)
				whole = append(whole, s...)
			}
			var a, b bytes.Buffer
			wa, _ := NewWriter(&a, WriterConfig{Limits: testLimits, Codec: codec, MinCompressBytes: 256})
			wb, _ := NewWriter(&b, WriterConfig{Limits: testLimits, Codec: codec, MinCompressBytes: 256})
			if err := wa.WriteSegments(TypeBatch, segs); err != nil {
				t.Fatal(err)
			}
			if err := wb.WriteRecord(TypeBatch, whole); err != nil {
				t.Fatal(err)
			}
			wa.Close()
			wb.Close()
			if codec == CodecNone && !bytes.Equal(a.Bytes(), b.Bytes()) {
				t.Fatal("WriteSegments and WriteRecord differ on the wire")
			}
			rd, _ := NewReader(&a, testLimits, newTestPool())
			_, buf, err := rd.ReadRecord()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(buf.Bytes(), whole) {
				t.Fatalf("%s: segments read back differently", codec)
			}
			buf.Release()
			rd.Close()
		}
	}
}

func TestCompressionOnlyWhenItSavesSpace(t *testing.T) {
	for _, codec := range []Codec{CodecSnappy, CodecZstd} {
		for _, tc := range []struct {
			name       string
			payload    []byte
			compressed bool
		}{
			{"random", random(8192, 3), false},
			{"below threshold", compressible(100), false},
			{"repetitive", compressible(8192), true},
		} {
			stream := writeAll(t, codec, tc.payload)
			h, err := DecodeHeader(stream, testLimits)
			if err != nil {
				t.Fatal(err)
			}
			if got := h.Codec != CodecNone; got != tc.compressed {
				t.Errorf("%s/%s: compressed=%v, want %v", codec, tc.name, got, tc.compressed)
			}
			if tc.compressed && int(h.WireLen) >= len(tc.payload)/2 {
				t.Errorf("%s/%s: %d wire bytes for %d raw", codec, tc.name, h.WireLen, len(tc.payload))
			}
		}
	}
}

// corrupt builds a one-frame stream and lets mutate change it.
func corrupt(t *testing.T, codec Codec, payload []byte, mutate func(b []byte)) []byte {
	b := bytes.Clone(writeAll(t, codec, payload))
	mutate(b)
	return b
}

// reseal recomputes the header checksum after a deliberate header change,
// so that the check under test is the one that fires.
func reseal(b []byte) {
	binary.LittleEndian.PutUint32(b[20:], Checksum(b[:20]))
}

func TestBadFrames(t *testing.T) {
	payload := compressible(4096)
	big := random(2*testLimits.MaxFrameBytes, 9)
	for _, tc := range []struct {
		name    string
		stream  []byte
		corrupt bool // ErrCorrupt, else a truncation error
	}{
		{"truncated header", writeAll(t, CodecNone, payload)[:10], false},
		{"truncated payload", writeAll(t, CodecNone, payload)[:HeaderBytes+100], false},
		{"truncated compressed payload", writeAll(t, CodecZstd, payload)[:HeaderBytes+10], false},
		{"truncated split record", writeAll(t, CodecNone, big)[:HeaderBytes+testLimits.MaxFrameBytes], false},
		{"bad magic", corrupt(t, CodecNone, payload, func(b []byte) { b[0] = 'X'; reseal(b) }), true},
		{"header checksum", corrupt(t, CodecNone, payload, func(b []byte) { b[20] ^= 1 }), true},
		{"header bit flip", corrupt(t, CodecNone, payload, func(b []byte) { b[5] ^= 1 }), true},
		{"payload checksum", corrupt(t, CodecNone, payload, func(b []byte) { b[HeaderBytes+7] ^= 1 }), true},
		{"compressed payload checksum", corrupt(t, CodecSnappy, payload, func(b []byte) { b[HeaderBytes+3] ^= 1 }), true},
		{"unknown type", corrupt(t, CodecNone, payload, func(b []byte) { b[2] = 200; reseal(b) }), true},
		{"type zero", corrupt(t, CodecNone, payload, func(b []byte) { b[2] = 0; reseal(b) }), true},
		{"unknown codec", corrupt(t, CodecSnappy, payload, func(b []byte) { b[3] = 3; reseal(b) }), true},
		{"unknown flag", corrupt(t, CodecNone, payload, func(b []byte) { b[3] |= 0x80; reseal(b) }), true},
		{"frame over limit", corrupt(t, CodecNone, payload, func(b []byte) {
			binary.LittleEndian.PutUint32(b[4:], uint32(testLimits.MaxFrameBytes+1))
			binary.LittleEndian.PutUint32(b[8:], uint32(testLimits.MaxFrameBytes+1))
			binary.LittleEndian.PutUint32(b[12:], uint32(testLimits.MaxFrameBytes+1))
			reseal(b)
		}), true},
		{"record over limit", corrupt(t, CodecNone, payload, func(b []byte) {
			binary.LittleEndian.PutUint32(b[12:], 0xffffffff)
			reseal(b)
		}), true},
		{"wire length != raw length", corrupt(t, CodecNone, payload, func(b []byte) {
			binary.LittleEndian.PutUint32(b[4:], 10)
			reseal(b)
		}), true},
		{"compressed not smaller", corrupt(t, CodecSnappy, payload, func(b []byte) {
			binary.LittleEndian.PutUint32(b[8:], binary.LittleEndian.Uint32(b[4:]))
			reseal(b)
		}), true},
		{"raw length larger than record", corrupt(t, CodecNone, payload, func(b []byte) {
			binary.LittleEndian.PutUint32(b[12:], 100)
			reseal(b)
		}), true},
		{"record longer than its frames", corrupt(t, CodecNone, payload, func(b []byte) {
			binary.LittleEndian.PutUint32(b[12:], 5000)
			reseal(b)
		}), true},
		{"snappy declares wrong size", corrupt(t, CodecSnappy, payload, func(b []byte) {
			binary.LittleEndian.PutUint32(b[8:], binary.LittleEndian.Uint32(b[8:])+1)
			binary.LittleEndian.PutUint32(b[12:], binary.LittleEndian.Uint32(b[12:])+1)
			reseal(b)
		}), true},
		{"zstd declares wrong size", corrupt(t, CodecZstd, payload, func(b []byte) {
			binary.LittleEndian.PutUint32(b[8:], binary.LittleEndian.Uint32(b[8:])-1)
			binary.LittleEndian.PutUint32(b[12:], binary.LittleEndian.Uint32(b[12:])-1)
			reseal(b)
		}), true},
		{"continued frame changes type", func() []byte {
			b := bytes.Clone(writeAll(t, CodecNone, big))
			off := HeaderBytes + testLimits.MaxFrameBytes
			b[off+2] = byte(TypePing)
			reseal(b[off:])
			return b
		}(), true},
		{"empty continued frame", func() []byte {
			var h [HeaderBytes]byte
			PutHeader(&h, Header{Type: TypeBatch, More: true, RecordLen: 10})
			return h[:]
		}(), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pool := newTestPool()
			r, err := NewReader(bytes.NewReader(tc.stream), testLimits, pool)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			_, buf, err := r.ReadRecord()
			if err == nil {
				buf.Release()
				t.Fatal("bad frame accepted")
			}
			if got := errors.Is(err, ErrCorrupt); got != tc.corrupt {
				t.Fatalf("error %v: corrupt=%v, want %v", err, got, tc.corrupt)
			}
			if !tc.corrupt && !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("truncation reported as %v, want io.ErrUnexpectedEOF", err)
			}
			if pool.Outstanding() != 0 {
				t.Fatalf("%d buffers leaked on error", pool.Outstanding())
			}
		})
	}
}

func TestWriterRejectsRecordOverLimit(t *testing.T) {
	w, err := NewWriter(io.Discard, WriterConfig{Limits: testLimits})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.WriteRecord(TypeBatch, make([]byte, testLimits.MaxRecordBytes+1)); err == nil {
		t.Fatal("record over the limit written")
	}
}

// FuzzReadRecord feeds arbitrary bytes to the reader: it must return
// records or errors, never panic, never hang, and never ask the pool for
// more than the limits (the pool panics if asked beyond its maximum, which
// equals MaxRecordBytes here).
func FuzzReadRecord(f *testing.F) {
	f.Add(writeAll(f, CodecNone, compressible(300)))
	f.Add(writeAll(f, CodecSnappy, compressible(3000)))
	f.Add(writeAll(f, CodecZstd, compressible(3000), random(100, 1)))
	f.Add(writeAll(f, CodecNone, random(70000, 2))) // split record
	f.Add([]byte("EK"))
	lim := Limits{MaxFrameBytes: 64 << 10, MaxRecordBytes: 128 << 10}
	f.Fuzz(func(t *testing.T, data []byte) {
		pool := zerocopy.NewPool(4096, lim.MaxRecordBytes, 1<<20)
		r, err := NewReader(bytes.NewReader(data), lim, pool)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		for range len(data)/HeaderBytes + 1 { // each record consumes at least one header
			_, buf, err := r.ReadRecord()
			if err != nil {
				break
			}
			if len(buf.Bytes()) > lim.MaxRecordBytes {
				t.Fatalf("record of %d bytes beyond the limit", len(buf.Bytes()))
			}
			buf.Release()
		}
		if pool.Outstanding() != 0 {
			t.Fatalf("%d buffers leaked", pool.Outstanding())
		}
	})
}

type nopWriter struct{}

func (nopWriter) Write(b []byte) (int, error) { return len(b), nil }

func BenchmarkWriteReadRecord(b *testing.B) {
	for _, codec := range []Codec{CodecNone, CodecSnappy, CodecZstd} {
		b.Run(codec.String(), func(b *testing.B) {
			payload := compressible(256 << 10)
			var stream bytes.Buffer
			w, _ := NewWriter(&stream, WriterConfig{Limits: Limits{MaxFrameBytes: 1 << 20, MaxRecordBytes: 1 << 20}, Codec: codec, MinCompressBytes: 1024})
			defer w.Close()
			pool := zerocopy.NewPool(4096, 1<<20, 4<<20)
			src := bytes.NewReader(nil)
			r, _ := NewReader(src, Limits{MaxFrameBytes: 1 << 20, MaxRecordBytes: 1 << 20}, pool)
			defer r.Close()
			b.SetBytes(int64(len(payload)))
			b.ReportAllocs()
			for b.Loop() {
				stream.Reset()
				if err := w.WriteRecord(TypeBatch, payload); err != nil {
					b.Fatal(err)
				}
				src.Reset(stream.Bytes())
				r.r.Reset(src)
				_, buf, err := r.ReadRecord()
				if err != nil {
					b.Fatal(err)
				}
				buf.Release()
			}
		})
	}
}
