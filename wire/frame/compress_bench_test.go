package frame

import (
	"bytes"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/edgekv/edgekv/zerocopy"
)

// processCPU is the user+system CPU time this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// jsonLike is a repetitive key-value payload, like a batch of small puts.
func jsonLike(n int) []byte {
	var b bytes.Buffer
	for i := 0; b.Len() < n; i++ {
		fmt.Fprintf(&b, `{"op":"put","key":"users/%06d/profile","value":{"name":"user-%d","active":true,"score":%d}},`, i, i, i*37%1000)
	}
	return b.Bytes()[:n]
}

// BenchmarkCompression reports, per codec and data kind, the compression
// ratio (wire bytes / raw bytes; 1 means sent raw because compressing did
// not save space) and the CPU cost of compressing and decompressing one
// 256 KiB frame (cpu-ns/op; ns/op and MB/s are wall-clock).
func BenchmarkCompression(b *testing.B) {
	const size = 256 << 10
	lim := Limits{MaxFrameBytes: 1 << 20, MaxRecordBytes: 1 << 20}
	for _, data := range []struct {
		name string
		b    []byte
	}{{"random", random(size, 11)}, {"json", jsonLike(size)}} {
		for _, c := range []struct {
			name  string
			codec Codec
			level zstd.EncoderLevel
		}{{"none", CodecNone, 0}, {"snappy", CodecSnappy, 0}, {"zstd-fastest", CodecZstd, zstd.SpeedFastest}, {"zstd-default", CodecZstd, zstd.SpeedDefault}} {
			b.Run(c.name+"/"+data.name, func(b *testing.B) {
				var stream bytes.Buffer
				w, err := NewWriter(&stream, WriterConfig{Limits: lim, Codec: c.codec, MinCompressBytes: 1024, ZstdLevel: c.level})
				if err != nil {
					b.Fatal(err)
				}
				defer w.Close()
				pool := zerocopy.NewPool(4096, 1<<20, 4<<20)
				src := bytes.NewReader(nil)
				r, err := NewReader(src, lim, pool)
				if err != nil {
					b.Fatal(err)
				}
				defer r.Close()
				b.SetBytes(size)
				b.ReportAllocs()
				cpu0 := processCPU()
				for b.Loop() {
					stream.Reset()
					if err := w.WriteRecord(TypeBatch, data.b); err != nil {
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
				// CPU time, not wall time: on a shared machine the wall
				// clock also counts other processes.
				b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/op")
				b.ReportMetric(float64(w.WireBytes)/float64(w.RawBytes), "ratio")
			})
		}
	}
}
