package kv

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"slices"
	"testing"
	"time"
)

// buildRichMachine applies a history that leaves data, deletions, and
// idempotency records of every remembered kind, some expired.
func buildRichMachine(t testing.TB, cfg Config) *harness {
	h := newHarness(t, cfg)
	for i := range 300 {
		h.apply(at(cmdPut(fmt.Sprintf("key/%04d", i), fmt.Sprintf("value-%d", i)), time.Duration(i)*time.Millisecond))
	}
	h.apply(cmdPut("empty", ""))
	h.apply(cmdDelPrefix("key/01"))
	h.apply(at(withIdem(cmdPut("idem/a", "A"), "r-ok"), time.Second))
	h.apply(at(withIdem(cmdDel("absent"), "r-404"), time.Second))
	h.apply(at(withIdem(cmdBatch(opPutIf("idem/a", "x", CondIfMatch, 1), opPut("q", "q")), "r-412"), time.Second))
	h.apply(at(withIdem(cmdDelPrefix("key/02"), "r-prefix"), 2*time.Second))
	h.apply(at(withIdem(cmdPut("old", "o"), "r-old"), 0)) // stamped late: clock stays at 2 s
	return h
}

func snapshotBytes(t testing.TB, v *View) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := v.WriteSnapshot(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func restoreInto(t testing.TB, cfg Config, data []byte) *harness {
	t.Helper()
	h := newHarness(t, cfg)
	if err := h.m.Restore(bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	if err := checkInvariants(h.m); err != nil {
		t.Fatal(err)
	}
	return h
}

func TestSnapshotRoundTripThenIdenticalBehaviour(t *testing.T) {
	cfg := Config{IdempotencyTTL: 5 * time.Second, QuotaBytes: 1 << 20}
	orig := buildRichMachine(t, cfg)
	data := snapshotBytes(t, orig.m.View())
	copyH := restoreInto(t, cfg, data)

	ov, cv := orig.m.View(), copyH.m.View()
	if ov.Revision() != cv.Revision() || ov.AppliedIndex() != cv.AppliedIndex() || ov.SizeBytes() != cv.SizeBytes() ||
		ov.LastTimestampNs() != cv.LastTimestampNs() || ov.IdempotencyKeys() != cv.IdempotencyKeys() || ov.Len() != cv.Len() {
		t.Fatalf("restored view differs: rev %d/%d applied %d/%d size %d/%d ts %d/%d idem %d/%d",
			ov.Revision(), cv.Revision(), ov.AppliedIndex(), cv.AppliedIndex(), ov.SizeBytes(), cv.SizeBytes(),
			ov.LastTimestampNs(), cv.LastTimestampNs(), ov.IdempotencyKeys(), cv.IdempotencyKeys())
	}
	if !mapsEqual(dump(orig.m), dump(copyH.m)) {
		t.Fatal("restored data differs")
	}
	// The same commands now give the same results on both, including
	// replays of the remembered outcomes and their expiry.
	follow := []*Command{
		at(withIdem(cmdPut("idem/a", "A"), "r-ok"), 3*time.Second),
		at(withIdem(cmdDel("absent"), "r-404"), 3*time.Second),
		at(withIdem(cmdBatch(opPutIf("idem/a", "x", CondIfMatch, 1), opPut("q", "q")), "r-412"), 3*time.Second),
		at(withIdem(cmdDelPrefix("key/02"), "r-prefix"), 3*time.Second),
		at(withIdem(cmdPut("idem/a", "other"), "r-ok"), 3*time.Second),
		at(cmdPutIfMatch("key/0003", "cas", 4), 3*time.Second),
		at(withIdem(cmdPut("idem/a", "A"), "r-ok"), 6*time.Second), // expired: applies again
		at(withIdem(cmdPut("old", "o"), "r-old"), 6*time.Second),
		at(cmdDelPrefix("key/"), 7*time.Second),
	}
	replays := 0
	for i, c := range follow {
		a, b := orig.apply(c), copyH.apply(c)
		if a.Status != b.Status || a.Revision != b.Revision || a.Deleted != b.Deleted || a.Replayed != b.Replayed ||
			!slices.Equal(a.Failed, b.Failed) || a.FailedCount != b.FailedCount {
			t.Fatalf("command %d: original %+v, restored %+v", i, a, b)
		}
		if a.Replayed {
			replays++
		}
	}
	if replays != 5 {
		t.Fatalf("%d replays, want 5: the table did not survive the snapshot", replays)
	}
	if !mapsEqual(dump(orig.m), dump(copyH.m)) || orig.m.View().Revision() != copyH.m.View().Revision() {
		t.Fatal("states diverged after the same commands")
	}
	// Snapshots of equal states are equal bytes.
	if !bytes.Equal(snapshotBytes(t, orig.m.View()), snapshotBytes(t, copyH.m.View())) {
		t.Fatal("snapshots of equal states differ")
	}
}

func TestSnapshotOfOldViewWhileApplying(t *testing.T) {
	h := buildRichMachine(t, Config{})
	v := h.m.View()
	want := dump(h.m)
	for i := range 100 {
		h.apply(cmdPut(fmt.Sprintf("key/%04d", i), "changed"))
	}
	h.apply(cmdDelPrefix("idem"))
	got := restoreInto(t, Config{}, snapshotBytes(t, v))
	if !mapsEqual(dump(got.m), want) || got.m.View().Revision() != v.Revision() {
		t.Fatal("snapshot of an old view does not hold that view's state")
	}
}

func TestRestoreLowersMaxKeys(t *testing.T) {
	h := buildRichMachine(t, Config{})
	data := snapshotBytes(t, h.m.View())
	small := restoreInto(t, Config{IdempotencyMaxKeys: 2}, data)
	if n := small.m.View().IdempotencyKeys(); n != 2 {
		t.Fatalf("%d records kept, want 2", n)
	}
	// The newest two (r-prefix, r-old) survive.
	if r := small.apply(withIdem(cmdPut("old", "o"), "r-old")); !r.Replayed {
		t.Fatal("newest record was evicted")
	}
	if r := small.apply(withIdem(cmdPut("idem/a", "A"), "r-ok")); r.Replayed {
		t.Fatal("oldest record survived")
	}
}

func TestRestoreRefusesDamage(t *testing.T) {
	h := buildRichMachine(t, Config{})
	data := snapshotBytes(t, h.m.View())
	m, err := NewMachine(Config{})
	if err != nil {
		t.Fatal(err)
	}
	m.ApplyEntries(nil, nil)
	before := m.View()
	// Every truncation.
	for n := 0; n < len(data); n += 1 + n/64 {
		if err := m.Restore(bytes.NewReader(data[:n])); !errors.Is(err, ErrCorruptSnapshot) {
			t.Fatalf("truncated at %d/%d: %v", n, len(data), err)
		}
	}
	// A flipped bit anywhere.
	for i := 0; i < len(data); i += 1 + i/32 {
		bad := bytes.Clone(data)
		bad[i] ^= 0x10
		if err := m.Restore(bytes.NewReader(bad)); !errors.Is(err, ErrCorruptSnapshot) {
			t.Fatalf("bit flipped at %d/%d: %v", i, len(data), err)
		}
	}
	if m.View() != before || m.AppliedIndex() != 0 {
		t.Fatal("a failed restore changed the machine")
	}
	if err := m.Restore(bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
}

// TestRestoreRefusesInconsistentContent: content with valid checksums
// that breaks a rule (order, bounds, declared size) is refused too.
func TestRestoreRefusesInconsistentContent(t *testing.T) {
	base := func() *View {
		h := newHarness(t, Config{})
		h.apply(cmdPut("a", "1"))
		h.apply(cmdPut("b", "2"))
		h.apply(withIdem(cmdPut("c", "3"), "r1"))
		h.apply(withIdem(cmdPut("d", "4"), "r2"))
		return h.m.View()
	}
	mutations := map[string]func(v *View){
		"key revision after the store's": func(v *View) { v.st.revision = 1 },
		"declared size wrong":            func(v *View) { v.st.sizeBytes++ },
		"idempotency seq past the counter": func(v *View) {
			v.st.idemSeq = 1
		},
		"remembered status never remembered": func(v *View) {
			r, _ := v.st.idemBySeq.Min()
			r.out.status = StatusQuotaExceeded
		},
		"failed ops on an OK outcome": func(v *View) {
			r, _ := v.st.idemBySeq.Min()
			r.out.failedCount, r.out.failed = 1, []uint32{0}
		},
	}
	for name, mutate := range mutations {
		t.Run(name, func(t *testing.T) {
			v := base()
			mutate(v)
			var buf bytes.Buffer
			if err := v.WriteSnapshot(&buf); err != nil {
				t.Fatal(err)
			}
			m, _ := NewMachine(Config{})
			if err := m.Restore(&buf); !errors.Is(err, ErrCorruptSnapshot) {
				t.Fatalf("restore: %v", err)
			}
		})
	}
}

type failingWriter struct{ left int }

func (w *failingWriter) Write(p []byte) (int, error) {
	if len(p) > w.left {
		n := w.left
		w.left = 0
		return n, io.ErrShortWrite
	}
	w.left -= len(p)
	return len(p), nil
}

func TestWriteSnapshotReportsWriteErrors(t *testing.T) {
	h := buildRichMachine(t, Config{})
	full := len(snapshotBytes(t, h.m.View()))
	for _, n := range []int{0, 10, full / 2, full - 1} {
		if err := h.m.View().WriteSnapshot(&failingWriter{left: n}); err == nil {
			t.Fatalf("write failing after %d bytes reported no error", n)
		}
	}
}

func FuzzRestore(f *testing.F) {
	h := buildRichMachine(f, Config{})
	f.Add(snapshotBytes(f, h.m.View()))
	small := newHarness(f, Config{})
	small.apply(withIdem(cmdBatch(opPutIf("a", "1", CondIfMatch, 5)), "r"))
	small.apply(cmdPut("k", "v"))
	f.Add(snapshotBytes(f, small.m.View()))
	empty, _ := NewMachine(Config{})
	f.Add(snapshotBytes(f, empty.View()))
	f.Add([]byte("EKVSNAP\x00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		// As given (checksums almost never match), and with both
		// checksums recomputed, so the fuzzer reaches the record parser.
		fuzzRestoreOnce(t, data)
		fuzzRestoreOnce(t, fixChecksums(data))
	})
}

// fixChecksums rewrites the header CRC and the trailing body CRC of data
// so that only the content decides whether it restores.
func fixChecksums(data []byte) []byte {
	if len(data) < snapshotHeaderBytes+4 {
		return data
	}
	b := bytes.Clone(data)
	crcAt := snapshotHeaderBytes - 4
	binary.LittleEndian.PutUint32(b[crcAt:], crc32.Checksum(b[:crcAt], castagnoli))
	body := b[snapshotHeaderBytes : len(b)-4]
	binary.LittleEndian.PutUint32(b[len(b)-4:], crc32.Checksum(body, castagnoli))
	return b
}

func fuzzRestoreOnce(t *testing.T, data []byte) {
	m, err := NewMachine(Config{IdempotencyMaxKeys: 4})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Restore(bytes.NewReader(data)); err != nil {
		if !errors.Is(err, ErrCorruptSnapshot) {
			t.Fatalf("unclassified error %v", err)
		}
		return
	}
	if err := checkInvariants(m); err != nil {
		t.Fatal(err)
	}
	// What restores keeps working.
	if r, err := m.ApplyCommand(m.AppliedIndex()+1, 0, mustEncode(t, withIdem(cmdPut("zz", "z"), "r"))); err != nil || r.Status == StatusInvalid {
		t.Fatalf("apply after restore: %+v %v", r, err)
	}
	m.Publish()
	if err := checkInvariants(m); err != nil {
		t.Fatal(err)
	}
}

func TestSnapshotLargeValues(t *testing.T) {
	h := newHarness(t, Config{Limits: Limits{MaxValueBytes: 4 << 20}})
	sizes := []int{0, 1, 64<<10 - 1, 64 << 10, 64<<10 + 1, 300_000, 4 << 20}
	for i, n := range sizes {
		v := bytes.Repeat([]byte{byte('a' + i)}, n)
		h.apply(cmdPut(fmt.Sprint("big", i), string(v)))
	}
	data := snapshotBytes(t, h.m.View())
	got := restoreInto(t, Config{Limits: Limits{MaxValueBytes: 4 << 20}}, data)
	for i, n := range sizes {
		v, _, ok := got.m.View().Get(fmt.Sprint("big", i))
		if !ok || len(v) != n || cap(v) != n || (n > 0 && v[n-1] != byte('a'+i)) {
			t.Fatalf("value %d: %d bytes (cap %d), want %d", i, len(v), cap(v), n)
		}
	}
	// A truncated large value is refused.
	if err := got.m.Restore(bytes.NewReader(data[:len(data)-100_000])); !errors.Is(err, ErrCorruptSnapshot) {
		t.Fatalf("truncated: %v", err)
	}
}

type brokenReader struct {
	data []byte
	err  error
}

func (r *brokenReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, r.err
	}
	n := copy(p, r.data)
	r.data = r.data[n:]
	return n, nil
}

// TestRestoreKeepsIOErrorsApart: a failing reader is not blamed on the
// data; the caller sees the reader's error, not ErrCorruptSnapshot.
func TestRestoreKeepsIOErrorsApart(t *testing.T) {
	h := buildRichMachine(t, Config{})
	data := snapshotBytes(t, h.m.View())
	diskErr := errors.New("disk on fire")
	for _, n := range []int{0, 10, snapshotHeaderBytes, snapshotHeaderBytes + 1, len(data) / 2, len(data) - 2} {
		m, _ := NewMachine(Config{})
		err := m.Restore(&brokenReader{data: data[:n], err: diskErr})
		if !errors.Is(err, diskErr) || errors.Is(err, ErrCorruptSnapshot) {
			t.Fatalf("reader failing after %d bytes: %v", n, err)
		}
	}
}
