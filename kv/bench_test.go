package kv

import (
	"fmt"
	"io"
	"testing"

	"github.com/edgekv/edgekv/consensus/raftmsg"
)

const benchKeys = 1 << 16

func benchKey(i int) string { return fmt.Sprintf("bench/key/%08d", i) }

// benchEntries pre-encodes one put per key (value of valueBytes).
func benchEntries(b *testing.B, valueBytes int, idem bool) []raftmsg.Entry {
	value := make([]byte, valueBytes)
	ents := make([]raftmsg.Entry, benchKeys)
	for i := range ents {
		c := &Command{Kind: KindPut, Op: Op{Kind: KindPut, Key: []byte(benchKey(i)), Value: value}}
		if idem {
			withIdem(c, fmt.Sprint("req-", i))
		}
		ents[i] = raftmsg.Entry{Type: raftmsg.EntryNormal, RequestID: uint64(i), Data: mustEncode(b, c)}
	}
	return ents
}

// benchApply applies ents round-robin in batches of batchEntries entries
// (one ApplyEntries call, one published view per batch).
func benchApply(b *testing.B, m *Machine, ents []raftmsg.Entry, batchEntries int) {
	results := make([]Result, 0, batchEntries)
	b.ReportAllocs()
	b.ResetTimer()
	next := 0
	for done := 0; done < b.N; {
		n := min(batchEntries, b.N-done, len(ents)-next)
		batch := ents[next : next+n]
		for i := range batch {
			batch[i].Index = m.AppliedIndex() + uint64(i) + 1
		}
		var err error
		if results, err = m.ApplyEntries(batch, results[:0]); err != nil {
			b.Fatal(err)
		}
		done += n
		next = (next + n) % len(ents)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "puts/s")
}

// BenchmarkApplyPut: overwrites of existing keys (the steady state), 100
// byte values, 64 entries per applied batch.
func BenchmarkApplyPut(b *testing.B) {
	m, _ := NewMachine(Config{})
	ents := benchEntries(b, 100, false)
	for i := range ents { // load every key once
		ents[i].Index = uint64(i) + 1
	}
	if _, err := m.ApplyEntries(ents, nil); err != nil {
		b.Fatal(err)
	}
	benchApply(b, m, ents, 64)
}

// BenchmarkApplyPutIdempotent: puts carrying idempotency keys (each first
// seen, so each is remembered; the table is bounded at 32k).
func BenchmarkApplyPutIdempotent(b *testing.B) {
	m, _ := NewMachine(Config{IdempotencyMaxKeys: benchKeys / 2})
	ents := benchEntries(b, 100, true)
	benchApply(b, m, ents, 64)
}

func loadedView(b *testing.B) *View {
	m, _ := NewMachine(Config{})
	ents := benchEntries(b, 100, false)
	for i := range ents {
		ents[i].Index = uint64(i) + 1
	}
	if _, err := m.ApplyEntries(ents, nil); err != nil {
		b.Fatal(err)
	}
	return m.View()
}

func BenchmarkViewGet(b *testing.B) {
	v := loadedView(b)
	keys := make([]string, 1024)
	for i := range keys {
		keys[i] = benchKey(i * 61 % benchKeys)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if _, _, ok := v.Get(keys[i%len(keys)]); !ok {
			b.Fatal("missing key")
		}
	}
}

func BenchmarkViewGetBytes(b *testing.B) {
	v := loadedView(b)
	keys := make([][]byte, 1024)
	for i := range keys {
		keys[i] = []byte(benchKey(i * 61 % benchKeys))
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if _, _, ok := v.GetBytes(keys[i%len(keys)]); !ok {
			b.Fatal("missing key")
		}
	}
}

// BenchmarkViewRange100: one page of 100 keys, reusing the result slice.
func BenchmarkViewRange100(b *testing.B) {
	v := loadedView(b)
	var items []Item
	afters := make([]string, 1024)
	for i := range afters {
		afters[i] = benchKey(i * 97 % (benchKeys - 200))
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		var more bool
		items, more = v.Range("bench/key/", afters[i%len(afters)], 100, items[:0])
		if len(items) != 100 || !more {
			b.Fatalf("page of %d", len(items))
		}
	}
}

func BenchmarkWriteSnapshot(b *testing.B) {
	v := loadedView(b)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if err := v.WriteSnapshot(io.Discard); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(v.Len()), "keys")
}

// BenchmarkApplyPutRandomSmallBatches is the shape a cluster under load
// applies: overwrites of random keys of a 10,000-key space (the comparison
// tool's default), 256-byte values, 16 entries per applied batch (one
// published view each). Every batch after a Publish copies the tree nodes it
// touches (copy on write), so this measures the per-put cost of the tree's
// node size.
func BenchmarkApplyPutRandomSmallBatches(b *testing.B) {
	const keys, batchEntries = 10_000, 16
	value := make([]byte, 256)
	m, _ := NewMachine(Config{})
	ents := make([]raftmsg.Entry, keys)
	for i := range ents {
		c := &Command{Kind: KindPut, Op: Op{Kind: KindPut, Key: []byte(benchKey(i)), Value: value}}
		ents[i] = raftmsg.Entry{Type: raftmsg.EntryNormal, Index: uint64(i) + 1, Data: mustEncode(b, c)}
	}
	if _, err := m.ApplyEntries(ents, nil); err != nil {
		b.Fatal(err)
	}
	// A fixed random permutation (xorshift, seeded): the same order in
	// every run, no key twice in a row.
	order := make([]raftmsg.Entry, keys)
	x := uint64(88172645463325252)
	for i := range order {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		order[i] = ents[x%keys]
	}
	benchApply(b, m, order, batchEntries)
}
