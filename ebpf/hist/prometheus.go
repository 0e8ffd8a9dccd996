package hist

import (
	"io"
	"strconv"
)

// Prometheus buckets: le = 2^k ns for k in [promMinExp, promMaxExp]
// (512ns .. ~34s), then +Inf. Fixed across scrapes, as Prometheus
// requires; values below the first bound land in the first bucket, values
// above the last in +Inf. The bound 2^k is inclusive-safe: slot k-1 holds
// values < 2^k.
const (
	promMinExp = 9
	promMaxExp = 35
)

// PrometheusBucketBounds returns the le bounds, in seconds, WritePrometheus
// uses (without +Inf).
func PrometheusBucketBounds() []float64 {
	b := make([]float64, 0, promMaxExp-promMinExp+1)
	for k := promMinExp; k <= promMaxExp; k++ {
		b = append(b, float64(uint64(1)<<uint(k))/1e9)
	}
	return b
}

// WritePrometheus writes h as a Prometheus histogram in the text
// exposition format: name_bucket{labels,le="..."} cumulative counts,
// name_sum in seconds and name_count. labels is either empty or a
// comma-separated list of label pairs without braces, e.g.
// `syscall="fdatasync"`; the caller quotes label values. The caller writes
// the # TYPE line once per metric family.
func WritePrometheus(w io.Writer, name, labels string, h *Log2) error {
	buf := make([]byte, 0, 4096)
	var cum uint64
	slot := 0
	for k := promMinExp; k <= promMaxExp; k++ {
		// Slots 0..k-1 hold values < 2^k.
		for ; slot < k; slot++ {
			cum += h.Slots[slot]
		}
		buf = appendSeries(buf, name, "_bucket", labels, `le="`+strconv.FormatFloat(float64(uint64(1)<<uint(k))/1e9, 'g', -1, 64)+`"`)
		buf = strconv.AppendUint(buf, cum, 10)
		buf = append(buf, '\n')
	}
	for ; slot < NumSlots; slot++ {
		cum += h.Slots[slot]
	}
	buf = appendSeries(buf, name, "_bucket", labels, `le="+Inf"`)
	buf = strconv.AppendUint(buf, cum, 10)
	buf = append(buf, '\n')
	buf = appendSeries(buf, name, "_sum", labels, "")
	buf = strconv.AppendFloat(buf, float64(h.SumNs)/1e9, 'g', -1, 64)
	buf = append(buf, '\n')
	buf = appendSeries(buf, name, "_count", labels, "")
	buf = strconv.AppendUint(buf, cum, 10)
	buf = append(buf, '\n')
	_, err := w.Write(buf)
	return err
}

func appendSeries(buf []byte, name, suffix, labels, extra string) []byte {
	buf = append(buf, name...)
	buf = append(buf, suffix...)
	if labels == "" && extra == "" {
		return append(buf, ' ')
	}
	buf = append(buf, '{')
	buf = append(buf, labels...)
	if labels != "" && extra != "" {
		buf = append(buf, ',')
	}
	buf = append(buf, extra...)
	return append(buf, '}', ' ')
}
