package hist

import (
	"bufio"
	"bytes"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestSlotBounds(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	values := []uint64{0, 1, 2, 3, 4, 1023, 1024, 1025, 1 << 62, 1<<63 - 1, 1 << 63, ^uint64(0)}
	for i := 0; i < 10000; i++ {
		values = append(values, r.Uint64()>>r.IntN(64))
	}
	for _, v := range values {
		s := Slot(v)
		if s < 0 || s >= NumSlots {
			t.Fatalf("Slot(%d) = %d out of range", v, s)
		}
		if lo := SlotLowerNs(s); v < lo {
			t.Fatalf("Slot(%d) = %d but lower bound %d", v, s, lo)
		}
		if hi := SlotUpperNs(s); v >= hi && s != NumSlots-1 {
			t.Fatalf("Slot(%d) = %d but upper bound %d", v, s, hi)
		}
	}
	if Slot(1024) != 10 || Slot(1023) != 9 || Slot(1) != 0 || Slot(2) != 1 {
		t.Fatal("Slot disagrees with the documented layout")
	}
}

func TestCountMeanQuantile(t *testing.T) {
	var h Log2
	if h.Count() != 0 || h.Mean() != 0 || h.QuantileUpper(0.5) != 0 {
		t.Fatal("empty histogram must report zeros")
	}
	// 90 values of 1000ns (slot 9, < 1024ns), 10 of 1ms (slot 19).
	for i := 0; i < 90; i++ {
		h.Add(1000)
	}
	for i := 0; i < 10; i++ {
		h.Add(1_000_000)
	}
	if got := h.Count(); got != 100 {
		t.Fatalf("Count = %d, want 100", got)
	}
	if got, want := h.Mean(), time.Duration((90*1000+10*1_000_000)/100); got != want {
		t.Fatalf("Mean = %v, want %v", got, want)
	}
	if got := h.QuantileUpper(0.5); got != 1024 {
		t.Fatalf("p50 upper = %v, want 1024ns", got)
	}
	if got := h.QuantileUpper(0.9); got != 1024 {
		t.Fatalf("p90 upper = %v, want 1024ns", got)
	}
	if got := h.QuantileUpper(0.99); got != 1<<20 {
		t.Fatalf("p99 upper = %v, want %v", got, time.Duration(1<<20))
	}
}

func TestSub(t *testing.T) {
	var a, b Log2
	a.Add(5)
	a.Add(5000)
	b = a
	b.Add(5000)
	b.Add(7)
	d := b.Sub(&a)
	if d.Count() != 2 || d.Slots[Slot(5000)] != 1 || d.Slots[Slot(7)] != 1 || d.SumNs != 5007 {
		t.Fatalf("delta = %+v", d)
	}
	// A reset histogram (smaller than prev) yields its own counts.
	var reset Log2
	reset.Add(3)
	d = reset.Sub(&b)
	if d.Count() != 1 || d.SumNs != 3 {
		t.Fatalf("delta after reset = count %d sum %d, want 1, 3", d.Count(), d.SumNs)
	}
}

func TestWriteText(t *testing.T) {
	var h Log2
	for i := 0; i < 40; i++ {
		h.Add(1500) // slot 10: 1.02µs -> 2.05µs
	}
	h.Add(300_000) // slot 18
	var buf bytes.Buffer
	if err := WriteText(&buf, "fdatasync", &h); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	// Title, header, then slots 10..18 inclusive.
	if len(lines) != 2+9 {
		t.Fatalf("got %d lines, want 11:\n%s", len(lines), out)
	}
	if !strings.HasPrefix(lines[0], "fdatasync: count 41, ") {
		t.Errorf("title line %q", lines[0])
	}
	if !strings.Contains(lines[2], "1.02µs -> 2.05µs") || !strings.Contains(lines[2], ": 40 ") ||
		!strings.Contains(lines[2], "|"+strings.Repeat("*", 40)+"|") {
		t.Errorf("peak row %q", lines[2])
	}
	if !strings.Contains(lines[3], ": 0 ") || !strings.Contains(lines[3], "|"+strings.Repeat(" ", 40)+"|") {
		t.Errorf("empty row %q", lines[3])
	}
	// A non-empty slot always gets at least one star.
	if !strings.Contains(lines[10], ": 1 ") || !strings.Contains(lines[10], "|*"+strings.Repeat(" ", 39)+"|") {
		t.Errorf("last row %q", lines[10])
	}
	buf.Reset()
	if err := WriteText(&buf, "runq", &Log2{}); err != nil || buf.String() != "runq: no events\n" {
		t.Fatalf("empty histogram rendered %q, %v", buf.String(), err)
	}
}

func TestFormatNs(t *testing.T) {
	for ns, want := range map[uint64]string{
		0: "0ns", 512: "512ns", 1024: "1.02µs", 1 << 20: "1.05ms", 1 << 30: "1.07s", 1 << 40: "1.1e+03s",
	} {
		if got := FormatNs(ns); got != want {
			t.Errorf("FormatNs(%d) = %q, want %q", ns, got, want)
		}
	}
}

// TestWritePrometheus parses the output back and checks it is a valid
// cumulative histogram that agrees with the slots.
func TestWritePrometheus(t *testing.T) {
	var h Log2
	h.Add(0)         // below the first bound
	h.Add(1000)      // < 1024ns
	h.Add(1000)      //
	h.Add(3_000_000) // < 2^22 ns
	h.Add(1 << 40)   // above the last bound: only in +Inf
	var buf bytes.Buffer
	if err := WritePrometheus(&buf, "edgekv_x_seconds", `syscall="fsync"`, &h); err != nil {
		t.Fatal(err)
	}
	bounds := PrometheusBucketBounds()
	sc := bufio.NewScanner(&buf)
	var prev uint64
	bucket := 0
	sawInf, sawSum, sawCount := false, false, false
	for sc.Scan() {
		line := sc.Text()
		sp := strings.LastIndexByte(line, ' ')
		series, val := line[:sp], line[sp+1:]
		switch {
		case strings.HasPrefix(series, `edgekv_x_seconds_bucket{syscall="fsync",le="+Inf"}`):
			n, _ := strconv.ParseUint(val, 10, 64)
			if n != 5 || n < prev {
				t.Errorf("+Inf = %d, want 5", n)
			}
			sawInf = true
		case strings.HasPrefix(series, `edgekv_x_seconds_bucket{syscall="fsync",le="`):
			le, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimPrefix(series, `edgekv_x_seconds_bucket{syscall="fsync",le="`), `"}`), 64)
			if err != nil || bucket >= len(bounds) || le != bounds[bucket] {
				t.Fatalf("bucket %d: le %v (%v), want %v", bucket, le, err, bounds)
			}
			n, _ := strconv.ParseUint(val, 10, 64)
			if n < prev {
				t.Errorf("bucket le=%v = %d below previous %d", le, n, prev)
			}
			var want uint64
			for _, v := range []uint64{0, 1000, 1000, 3_000_000, 1 << 40} {
				if float64(v)/1e9 <= le {
					want++
				}
			}
			if n != want {
				t.Errorf("bucket le=%v = %d, want %d", le, n, want)
			}
			prev = n
			bucket++
		case series == `edgekv_x_seconds_sum{syscall="fsync"}`:
			s, _ := strconv.ParseFloat(val, 64)
			if want := float64(h.SumNs) / 1e9; s != want {
				t.Errorf("sum = %v, want %v", s, want)
			}
			sawSum = true
		case series == `edgekv_x_seconds_count{syscall="fsync"}`:
			if val != "5" {
				t.Errorf("count = %s, want 5", val)
			}
			sawCount = true
		default:
			t.Errorf("unexpected line %q", line)
		}
	}
	if bucket != len(bounds) || !sawInf || !sawSum || !sawCount {
		t.Fatalf("incomplete output: %d buckets, inf %v sum %v count %v", bucket, sawInf, sawSum, sawCount)
	}
	buf.Reset()
	if err := WritePrometheus(&buf, "edgekv_y_seconds", "", &Log2{}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), "edgekv_y_seconds_count 0\n") || !strings.Contains(buf.String(), `edgekv_y_seconds_bucket{le="+Inf"} 0`) {
		t.Fatalf("unlabelled output:\n%s", buf.String())
	}
}
