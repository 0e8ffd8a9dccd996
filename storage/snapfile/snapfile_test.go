package snapfile

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"reflect"
	"runtime"
	"testing"

	"github.com/edgekv/edgekv/consensus/raftmsg"
	"github.com/edgekv/edgekv/storage/diskerr"
)

func sampleMeta() raftmsg.SnapshotMeta {
	return raftmsg.SnapshotMeta{Index: 1234, Term: 7, Conf: raftmsg.ConfState{Voters: []raftmsg.NodeID{1, 2, 3}, Learners: []raftmsg.NodeID{9}}}
}

func writeSnapshot(t testing.TB, codec Codec, payload []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	n, err := Write(&buf, sampleMeta(), []byte("n1=127.0.0.1:7380"), codec, func(w io.Writer) error {
		_, err := w.Write(payload)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if n != int64(buf.Len()) {
		t.Fatalf("Write returned %d, wrote %d", n, buf.Len())
	}
	return buf.Bytes()
}

func readSnapshot(b []byte) (*Info, []byte, error) {
	r := bytes.NewReader(b)
	info, err := Verify(r, int64(len(b)), "snap")
	if err != nil {
		return nil, nil, err
	}
	p, err := info.Payload(r, "snap")
	if err != nil {
		return nil, nil, err
	}
	defer p.Close()
	out, err := io.ReadAll(io.LimitReader(p, 1<<30))
	return info, out, err
}

func TestRoundTripEveryCodec(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	payloads := [][]byte{nil, []byte("x"), bytes.Repeat([]byte("key=value;"), 100000)}
	random := make([]byte, 300000)
	for i := range random {
		random[i] = byte(rng.Uint32())
	}
	payloads = append(payloads, random)
	for _, codec := range []Codec{CodecNone, CodecSnappy, CodecZstd} {
		for _, payload := range payloads {
			b := writeSnapshot(t, codec, payload)
			info, got, err := readSnapshot(b)
			if err != nil {
				t.Fatalf("%v, %d bytes: %v", codec, len(payload), err)
			}
			if !bytes.Equal(got, payload) {
				t.Fatalf("%v: payload of %d bytes came back as %d", codec, len(payload), len(got))
			}
			if !reflect.DeepEqual(info.Meta, sampleMeta()) || string(info.Membership) != "n1=127.0.0.1:7380" || info.Codec != codec {
				t.Fatalf("%v: info %+v", codec, info)
			}
		}
	}
}

// TestEveryBitFlipDetected flips each bit of a small file (and truncates it
// at every length): Verify must refuse every one.
func TestEveryBitFlipDetected(t *testing.T) {
	for _, codec := range []Codec{CodecNone, CodecSnappy, CodecZstd} {
		orig := writeSnapshot(t, codec, []byte("hello, snapshot payload"))
		for i := 0; i < len(orig)*8; i++ {
			b := bytes.Clone(orig)
			b[i/8] ^= 1 << (i % 8)
			if _, _, err := readSnapshot(b); !errors.Is(err, diskerr.ErrCorrupt) && !errors.Is(err, diskerr.ErrMetaMismatch) {
				t.Fatalf("%v: flip of bit %d not detected: %v", codec, i, err)
			}
		}
		for n := 0; n < len(orig); n++ {
			if _, _, err := readSnapshot(orig[:n]); !errors.Is(err, diskerr.ErrCorrupt) {
				t.Fatalf("%v: truncation to %d not detected: %v", codec, n, err)
			}
		}
	}
}

func TestParseCompression(t *testing.T) {
	for in, want := range map[string]Codec{"none": CodecNone, "snappy": CodecSnappy, "zstd": CodecZstd, "auto": CodecZstd} {
		if got, err := ParseCompression(in); err != nil || got != want {
			t.Fatalf("%q: %v %v", in, got, err)
		}
	}
	if _, err := ParseCompression("lz4"); err == nil {
		t.Fatal("lz4 accepted")
	}
}

func FuzzVerify(f *testing.F) {
	for _, codec := range []Codec{CodecNone, CodecSnappy, CodecZstd} {
		f.Add(writeSnapshot(f, codec, []byte("payload payload payload")))
	}
	f.Add([]byte("edgekvSN"))
	f.Fuzz(func(t *testing.T, b []byte) {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		info, out, err := readSnapshot(b)
		runtime.ReadMemStats(&after)
		// Input-sized buffers, the output, and the decoders' bounded state.
		limit := uint64(4*len(b)+2*len(out)) + 4*maxWindowBytes
		if grown := after.TotalAlloc - before.TotalAlloc; grown > limit {
			t.Fatalf("reading %d bytes allocated %d", len(b), grown)
		}
		if err == nil && info == nil {
			t.Fatal("no error and no info")
		}
	})
}

func FuzzDecodeMeta(f *testing.F) {
	m, _ := encodeMeta(sampleMeta().Conf, []byte("members"))
	f.Add(m)
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		conf, membership, err := decodeMeta(b)
		if err != nil {
			return
		}
		// Whatever decodes must re-encode to the same bytes.
		again, err := encodeMeta(conf, membership)
		if err != nil || !bytes.Equal(again, b) {
			t.Fatalf("re-encoding differs: %v", err)
		}
		if 8*(len(conf.Voters)+len(conf.Learners))+len(membership) > len(b) {
			t.Fatal("decoded more than the input holds")
		}
	})
}

// FuzzPayloadDecompress wraps fuzzer-chosen bytes as the stored payload of
// an otherwise valid file (correct checksums), so the decompressors see
// arbitrary input: they must fail or stop, never panic or produce more than
// the declared raw length.
func FuzzPayloadDecompress(f *testing.F) {
	for _, codec := range []Codec{CodecNone, CodecSnappy, CodecZstd} {
		b := writeSnapshot(f, codec, bytes.Repeat([]byte("abc"), 100))
		f.Add(uint8(codec), b[headerBytes:len(b)-trailerBytes], uint32(300))
	}
	f.Fuzz(func(t *testing.T, codec uint8, stored []byte, rawBytes uint32) {
		codec %= uint8(codecCount)
		rawBytes %= 1 << 20
		file := wrapPayload(Codec(codec), stored, int64(rawBytes))
		info, err := Verify(bytes.NewReader(file), int64(len(file)), "f")
		if err != nil {
			t.Fatalf("hand-built file does not verify: %v", err)
		}
		p, err := info.Payload(bytes.NewReader(file), "f")
		if err != nil {
			return
		}
		defer p.Close()
		n, _ := io.Copy(io.Discard, p)
		if n > int64(rawBytes) {
			t.Fatalf("%d bytes out, %d declared", n, rawBytes)
		}
	})
}

// wrapPayload builds a file around stored payload bytes with correct
// checksums and an empty meta.
func wrapPayload(codec Codec, stored []byte, rawBytes int64) []byte {
	meta, _ := encodeMeta(raftmsg.ConfState{}, nil)
	hdr := make([]byte, headerBytes)
	copy(hdr, fileMagic[:])
	binary.LittleEndian.PutUint16(hdr[8:], Version)
	hdr[10] = uint8(codec)
	binary.LittleEndian.PutUint64(hdr[12:], 1)
	binary.LittleEndian.PutUint32(hdr[28:], uint32(len(meta)))
	binary.LittleEndian.PutUint32(hdr[32:], crc32.Checksum(hdr[:32], castagnoli))
	file := append(append(hdr, meta...), stored...)
	tr := make([]byte, trailerBytes)
	binary.LittleEndian.PutUint64(tr[0:], uint64(len(stored)))
	binary.LittleEndian.PutUint64(tr[8:], uint64(rawBytes))
	binary.LittleEndian.PutUint32(tr[16:], crc32.Checksum(file, castagnoli))
	copy(tr[20:], trailerMagic[:])
	return append(file, tr...)
}
