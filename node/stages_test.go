package node

import (
	"runtime"
	"slices"
	"sync"
	"testing"
)

// recorder collects the batch ids a ledger consumer marks.
type recorder struct{ ids []uint64 }

func (r *recorder) mark(id uint64) { r.ids = append(r.ids, id) }

func TestStageLedgerMarksInOrderUpToIndex(t *testing.T) {
	var l stageLedger
	var cursor uint64
	var r recorder
	l.markUpTo(&cursor, 100, r.mark)
	if len(r.ids) != 0 {
		t.Fatalf("empty ledger marked %v", r.ids)
	}
	// Batches 1..3 end at indexes 10, 12, 20.
	l.push(1, 10)
	l.push(2, 12)
	l.push(3, 20)
	l.markUpTo(&cursor, 9, r.mark)
	if len(r.ids) != 0 {
		t.Fatalf("marked %v before index 10 was reached", r.ids)
	}
	l.markUpTo(&cursor, 12, r.mark)
	if !slices.Equal(r.ids, []uint64{1, 2}) {
		t.Fatalf("up to 12: marked %v, want [1 2]", r.ids)
	}
	l.markUpTo(&cursor, 15, r.mark) // nothing new reached
	l.markUpTo(&cursor, 12, r.mark) // index went back: nothing twice
	if !slices.Equal(r.ids, []uint64{1, 2}) {
		t.Fatalf("marked %v, want [1 2] still", r.ids)
	}
	l.push(4, 21)
	l.markUpTo(&cursor, 100, r.mark)
	if !slices.Equal(r.ids, []uint64{1, 2, 3, 4}) {
		t.Fatalf("marked %v, want [1 2 3 4]", r.ids)
	}
}

// Each consumer has its own cursor: one stage lagging does not hold
// another back, and each marks every batch once.
func TestStageLedgerCursorsAreIndependent(t *testing.T) {
	var l stageLedger
	var fast, slow uint64
	var rf, rs recorder
	for i := uint64(1); i <= 5; i++ {
		l.push(i, 10*i)
	}
	l.markUpTo(&fast, 50, rf.mark)
	l.markUpTo(&slow, 20, rs.mark)
	l.markUpTo(&slow, 50, rs.mark)
	want := []uint64{1, 2, 3, 4, 5}
	if !slices.Equal(rf.ids, want) || !slices.Equal(rs.ids, want) {
		t.Fatalf("fast %v, slow %v, want both %v", rf.ids, rs.ids, want)
	}
}

// Records of a lost leadership are never marked, even when a later log
// reaches their indexes (the entries may be another leader's).
func TestStageLedgerInvalidate(t *testing.T) {
	var l stageLedger
	var cursor uint64
	var r recorder
	l.push(1, 10)
	l.push(2, 11)
	l.markUpTo(&cursor, 10, r.mark)
	l.invalidate()
	l.push(7, 11) // the next leadership's first batch
	l.markUpTo(&cursor, 11, r.mark)
	if !slices.Equal(r.ids, []uint64{1, 7}) {
		t.Fatalf("marked %v, want [1 7]: batch 2 belonged to the lost leadership", r.ids)
	}
}

// A consumer lapped by more than the ring holds skips the lost records
// and marks the ones still there, in order, once.
func TestStageLedgerLapped(t *testing.T) {
	var l stageLedger
	var cursor uint64
	var r recorder
	const total = stageLedgerLen + 10
	for i := uint64(1); i <= total; i++ {
		l.push(i, i)
	}
	l.markUpTo(&cursor, total, r.mark)
	if len(r.ids) != stageLedgerLen || r.ids[0] != total-stageLedgerLen+1 || r.ids[len(r.ids)-1] != total {
		t.Fatalf("lapped consumer marked %d ids from %d to %d, want the last %d", len(r.ids), r.ids[0], r.ids[len(r.ids)-1], stageLedgerLen)
	}
	if !slices.IsSorted(r.ids) {
		t.Fatal("marks out of order")
	}
}

// One producer and three consumers at once, as in the node (run it under
// -race): every consumer marks each id at most once, in increasing order,
// and never one whose index it has not reached.
func TestStageLedgerConcurrent(t *testing.T) {
	var l stageLedger
	const batches = 20000
	var reached [3]struct {
		mu    sync.Mutex
		index uint64
	}
	var wg sync.WaitGroup
	done := make(chan struct{})
	marked := make([][]uint64, len(reached))
	for c := range reached {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var cursor uint64
			var index uint64
			mark := func(id uint64) {
				if id*2 > index {
					t.Errorf("consumer %d marked batch %d (index %d) at index %d", c, id, id*2, index)
				}
				marked[c] = append(marked[c], id)
			}
			for {
				select {
				case <-done:
					index = 2 * batches // the stage caught up with the log
					l.markUpTo(&cursor, index, mark)
					return
				default:
				}
				// Consumers reach indexes at their own pace: c=0 keeps up,
				// the others lag behind the producer.
				index = l.published.Load() * 2
				if c > 0 {
					index = index * uint64(c) / uint64(c+1)
				}
				l.markUpTo(&cursor, index, mark)
				runtime.Gosched()
			}
		}()
	}
	for i := uint64(1); i <= batches; i++ {
		l.push(i, 2*i)
		if i%64 == 0 {
			runtime.Gosched()
		}
	}
	close(done)
	wg.Wait()
	for c, ids := range marked {
		if !slices.IsSorted(ids) || len(slices.Compact(slices.Clone(ids))) != len(ids) {
			t.Errorf("consumer %d marked ids out of order or twice", c)
		}
		if len(ids) == 0 || ids[len(ids)-1] != batches {
			t.Errorf("consumer %d did not mark the last batch %d", c, batches)
		}
	}
}
