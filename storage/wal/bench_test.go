package wal

import (
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/edgekv/edgekv/consensus/raftmsg"
	"github.com/edgekv/edgekv/storage/vfs"
)

// rawSyncRate measures this machine's 4 KiB write + fdatasync rate in dir:
// the ceiling for a log that syncs every write on its own.
func rawSyncRate(b *testing.B, dir string, n int) float64 {
	f, err := vfs.OS{}.Create(filepath.Join(dir, "raw"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if err := f.Preallocate(int64(n) * 4096); err != nil {
		b.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 4096)
	start := time.Now()
	for i := 0; i < n; i++ {
		if _, err := f.WriteAt(buf, int64(i)*4096); err != nil {
			b.Fatal(err)
		}
		if err := f.Sync(); err != nil {
			b.Fatal(err)
		}
	}
	return float64(n) / time.Since(start).Seconds()
}

// BenchmarkGroupCommit saves one entry per call from many concurrent
// writers, and reports entries/s, MB/s, syncs/s of a raw 4 KiB
// write+fdatasync loop measured in the same run, and their ratio.
func BenchmarkGroupCommit(b *testing.B) {
	for _, entryBytes := range []int{128, 1024} {
		for _, writers := range []int{1, 16, 128} {
			b.Run(fmt.Sprintf("entry=%dB/writers=%d", entryBytes, writers), func(b *testing.B) {
				dir := b.TempDir()
				raw := rawSyncRate(b, dir, 200)
				l, _, err := Open(Options{FS: vfs.OS{}, Dir: filepath.Join(dir, "wal")})
				if err != nil {
					b.Fatal(err)
				}
				defer l.Close()
				data := make([]byte, entryBytes)
				var mu sync.Mutex // index assignment + submission order
				next := uint64(1)
				perWriter := (b.N + writers - 1) / writers
				var wg sync.WaitGroup
				b.ReportAllocs()
				b.ResetTimer()
				start := time.Now()
				for w := 0; w < writers; w++ {
					wg.Add(1)
					go func() {
						defer wg.Done()
						done := make(chan error, 1)
						cb := func(err error) { done <- err }
						ents := make([]raftmsg.Entry, 1)
						for i := 0; i < perWriter; i++ {
							mu.Lock()
							ents[0] = raftmsg.Entry{Index: next, Term: 1, Data: data}
							next++
							err := l.Submit(raftmsg.HardState{}, ents, cb)
							mu.Unlock()
							if err == nil {
								err = <-done
							}
							if err != nil {
								b.Error(err)
								return
							}
						}
					}()
				}
				wg.Wait()
				elapsed := time.Since(start).Seconds()
				b.StopTimer()
				total := float64(perWriter * writers)
				entriesPerSec := total / elapsed
				b.ReportMetric(entriesPerSec, "entries/s")
				b.ReportMetric(entriesPerSec*float64(entryBytes)/1e6, "MB/s")
				b.ReportMetric(raw, "raw4KiBsyncs/s")
				b.ReportMetric(entriesPerSec/raw, "ratio")
			})
		}
	}
}

// BenchmarkSaveSerial is one writer saving 16-entry batches: the steady
// state allocations of the save path (expected 0 allocs/op).
func BenchmarkSaveSerial(b *testing.B) {
	l, _, err := Open(Options{FS: vfs.OS{}, Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	ents := make([]raftmsg.Entry, 16)
	data := make([]byte, 256)
	next := uint64(1)
	b.ReportAllocs()
	b.SetBytes(int64(len(ents) * len(data)))
	for i := 0; i < b.N; i++ {
		for k := range ents {
			ents[k] = raftmsg.Entry{Index: next, Term: 1, Data: data}
			next++
		}
		if err := l.Save(raftmsg.HardState{Term: 1, Commit: next - 1}, ents); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPipelined is the runtime's pattern: one goroutine submits Raft
// batches of 64 entries with Submit, keeping up to 4 batches in flight
// (handing over batch N+1 while N syncs). Reports entries/s and MB/s beside
// the raw 4 KiB write+fdatasync rate of the same run.
func BenchmarkPipelined(b *testing.B) {
	const batchEntries, window, entryBytes = 64, 4, 256
	dir := b.TempDir()
	raw := rawSyncRate(b, dir, 200)
	l, _, err := Open(Options{FS: vfs.OS{}, Dir: filepath.Join(dir, "wal")})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	ents := make([]raftmsg.Entry, batchEntries)
	data := make([]byte, entryBytes)
	inflight := make(chan error, window)
	cb := func(err error) { inflight <- err }
	next := uint64(1)
	pending := 0
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		if pending == window {
			if err := <-inflight; err != nil {
				b.Fatal(err)
			}
			pending--
		}
		for k := range ents {
			ents[k] = raftmsg.Entry{Index: next, Term: 1, Data: data}
			next++
		}
		if err := l.Submit(raftmsg.HardState{Term: 1, Commit: next - 1}, ents, cb); err != nil {
			b.Fatal(err)
		}
		pending++
	}
	for ; pending > 0; pending-- {
		if err := <-inflight; err != nil {
			b.Fatal(err)
		}
	}
	elapsed := time.Since(start).Seconds()
	b.StopTimer()
	entriesPerSec := float64(b.N*batchEntries) / elapsed
	b.ReportMetric(entriesPerSec, "entries/s")
	b.ReportMetric(entriesPerSec*entryBytes/1e6, "MB/s")
	b.ReportMetric(raw, "raw4KiBsyncs/s")
	b.ReportMetric(float64(b.N)/elapsed/raw, "batches-per-raw-sync")
}
