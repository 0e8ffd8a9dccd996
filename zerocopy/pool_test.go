package zerocopy

import (
	"sync"
	"testing"
)

func TestGetRoundsUpToClass(t *testing.T) {
	p := NewPool(4096, 1<<20, 1<<20)
	for _, tc := range []struct{ n, wantCap int }{
		{0, 4096}, {1, 4096}, {4096, 4096}, {4097, 8192}, {1 << 20, 1 << 20}, {(1 << 19) + 1, 1 << 20},
	} {
		b := p.Get(tc.n)
		if len(b.Bytes()) != tc.n || b.Cap() != tc.wantCap {
			t.Errorf("Get(%d): len %d cap %d, want len %d cap %d", tc.n, len(b.Bytes()), b.Cap(), tc.n, tc.wantCap)
		}
		b.Release()
	}
	if o := p.Outstanding(); o != 0 {
		t.Fatalf("outstanding %d after releasing everything", o)
	}
}

func TestReleaseReusesBuffer(t *testing.T) {
	p := NewPool(4096, 65536, 65536)
	b := p.Get(100)
	b.Bytes()[0] = 42
	first := &b.Bytes()[:1][0]
	b.Release()
	c := p.Get(200)
	if &c.Bytes()[:1][0] != first {
		t.Fatal("a released buffer of the same class was not reused")
	}
	c.Release()
}

func TestRetainNeedsTwoReleases(t *testing.T) {
	p := NewPool(4096, 4096, 4096)
	b := p.Get(10)
	b.Retain()
	b.Release()
	if p.Outstanding() != 1 {
		t.Fatal("buffer returned while a reference remained")
	}
	b.Release()
	if p.Outstanding() != 0 {
		t.Fatal("buffer not returned after the last release")
	}
}

func TestDoubleReleasePanics(t *testing.T) {
	p := NewPool(4096, 4096, 4096)
	b := p.Get(10)
	b.Release()
	defer func() {
		if recover() == nil {
			t.Fatal("double release did not panic")
		}
	}()
	b.Release()
}

func TestGetBeyondMaxPanics(t *testing.T) {
	p := NewPool(4096, 8192, 0)
	defer func() {
		if recover() == nil {
			t.Fatal("Get beyond MaxBytes did not panic")
		}
	}()
	p.Get(8193)
}

func TestRetentionIsBounded(t *testing.T) {
	p := NewPool(4096, 16384, 8192) // class 4096 keeps 2, 8192 keeps 1, 16384 none
	if got, want := p.RetainedBoundBytes(), 3*8192; got != want {
		t.Fatalf("RetainedBoundBytes = %d, want %d", got, want)
	}
	var bufs []*Buffer
	for range 10 {
		bufs = append(bufs, p.Get(4096))
	}
	for _, b := range bufs {
		b.Release()
	}
	if n := len(p.classes[0]); n != 2 {
		t.Fatalf("class 0 retains %d buffers, want 2", n)
	}
	p.Get(16384).Release()
	if n := len(p.classes[2]); n != 0 {
		t.Fatalf("class 2 (larger than retainBytes) retains %d buffers, want 0", n)
	}
}

func TestConcurrentGetRelease(t *testing.T) {
	p := NewPool(4096, 1<<16, 1<<16)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 1000 {
				b := p.Get((g*1000 + i) % (1 << 16))
				b.Retain()
				b.Release()
				b.Release()
			}
		})
	}
	wg.Wait()
	if p.Outstanding() != 0 {
		t.Fatalf("outstanding %d", p.Outstanding())
	}
}

func BenchmarkGetRelease(b *testing.B) {
	p := NewPool(4096, 1<<20, 1<<20)
	b.ReportAllocs()
	for b.Loop() {
		p.Get(64 << 10).Release()
	}
}

func TestClassCount(t *testing.T) {
	for _, tc := range []struct{ min, max, want int }{{4096, 4096, 1}, {4096, 8192, 2}, {4096, 8193, 3}, {4096, 64 << 20, 15}, {1000, 4096, 3}} {
		if got := ClassCount(tc.min, tc.max); got != tc.want {
			t.Errorf("ClassCount(%d, %d) = %d, want %d", tc.min, tc.max, got, tc.want)
		}
		if got := len(NewPool(tc.min, tc.max, 0).classes); got != tc.want {
			t.Errorf("NewPool(%d, %d) has %d classes, want %d", tc.min, tc.max, got, tc.want)
		}
	}
}
