package snapfile

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"reflect"
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
		info, _, err := readSnapshot(b)
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
