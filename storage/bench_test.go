package storage

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/edgekv/edgekv/consensus/raftmsg"
	"github.com/edgekv/edgekv/storage/vfs"
)

const benchKeys = 1_000_000

// writeSyntheticState streams a 1 M-key state: per key a length-prefixed
// key "key-%08d" and a 32-byte value (half counter, half pseudo-random, so
// it compresses about as well as typical small values).
func writeSyntheticState(w io.Writer) error {
	bw := bufio.NewWriterSize(w, 256<<10)
	var rec [4 + 12 + 4 + 32]byte
	x := uint64(0x9e3779b97f4a7c15)
	for i := 0; i < benchKeys; i++ {
		binary.LittleEndian.PutUint32(rec[0:], 12)
		copy(rec[4:], fmt.Appendf(rec[4:4:16], "key-%08d", i))
		binary.LittleEndian.PutUint32(rec[16:], 32)
		binary.LittleEndian.PutUint64(rec[20:], uint64(i))
		binary.LittleEndian.PutUint64(rec[28:], uint64(i)*3)
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		binary.LittleEndian.PutUint64(rec[36:], x)
		binary.LittleEndian.PutUint64(rec[44:], x>>3)
		if _, err := bw.Write(rec[:]); err != nil {
			return err
		}
	}
	return bw.Flush()
}

// BenchmarkSnapshot1MKeys writes (compress, checksum, fsync, rename, dir
// fsync, log reference) and loads (verify, decompress, read all) a
// snapshot of a synthetic 1 M-key state on the real file system.
func BenchmarkSnapshot1MKeys(b *testing.B) {
	for _, codec := range []Compression{CompressionZstd, CompressionSnappy, CompressionNone} {
		b.Run(codec.String(), func(b *testing.B) {
			s, _, err := Open(b.TempDir(), Options{Identity: testID, FS: vfs.OS{}, Compression: codec, SegmentBytes: 1 << 20, SnapshotKeep: 1})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			var writeTotal, loadTotal time.Duration
			var rawBytes, fileBytes int64
			for i := 0; i < b.N; i++ {
				idx := uint64(i + 1)
				if err := s.Save(raftmsg.HardState{Term: 1, Commit: idx}, []raftmsg.Entry{{Index: idx, Term: 1}}); err != nil {
					b.Fatal(err)
				}
				start := time.Now()
				if err := s.SaveSnapshot(raftmsg.SnapshotMeta{Index: idx, Term: 1}, []byte("members"), writeSyntheticState); err != nil {
					b.Fatal(err)
				}
				writeTotal += time.Since(start)
				start = time.Now()
				snap, err := s.OpenSnapshot()
				if err != nil {
					b.Fatal(err)
				}
				n, err := io.Copy(io.Discard, snap.Payload)
				snap.Close()
				if err != nil {
					b.Fatal(err)
				}
				loadTotal += time.Since(start)
				rawBytes = n
				rc, size, _, _ := s.SnapshotFile()
				rc.Close()
				fileBytes = size
			}
			b.ReportMetric(float64(writeTotal.Milliseconds())/float64(b.N), "write-ms")
			b.ReportMetric(float64(loadTotal.Milliseconds())/float64(b.N), "load-ms")
			b.ReportMetric(float64(rawBytes)/1e6, "raw-MB")
			b.ReportMetric(float64(fileBytes)/1e6, "file-MB")
		})
	}
}
