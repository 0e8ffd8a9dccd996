package vfs

import (
	"bytes"
	"errors"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

func readDisk(t *testing.T, path string) ([]byte, bool) {
	t.Helper()
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false
	}
	if err != nil {
		t.Fatal(err)
	}
	return b, true
}

func TestCrashFSHoldsWritesUntilSync(t *testing.T) {
	dir := t.TempDir()
	c := NewCrashFS()
	p := filepath.Join(dir, "f")
	f, err := c.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte("hello"), 0)
	if _, ok := readDisk(t, p); ok {
		t.Fatal("a new file's entry reached the disk before the directory sync")
	}
	buf := make([]byte, 5)
	if _, err := f.ReadAt(buf, 0); err != nil || string(buf) != "hello" {
		t.Fatalf("process view: %q %v", buf, err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if _, ok := readDisk(t, p); ok {
		t.Fatal("file synced but directory not: the name must not be durable")
	}
	if err := c.SyncDir(dir); err != nil {
		t.Fatal(err)
	}
	if b, ok := readDisk(t, p); !ok || string(b) != "hello" {
		t.Fatalf("after file and dir sync: %q %v", b, ok)
	}
	f.WriteAt([]byte("HELLO world"), 0)
	if b, _ := readDisk(t, p); string(b) != "hello" {
		t.Fatalf("unsynced write reached the disk: %q", b)
	}
	c, _ = c.Crash(CrashDropUnsynced, nil)
	if _, err := f.ReadAt(buf, 0); err == nil {
		t.Fatal("handle survived the crash")
	}
	g, err := c.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	size, _ := g.Size()
	got := make([]byte, size)
	g.ReadAt(got, 0)
	if string(got) != "hello" {
		t.Fatalf("after crash: %q", got)
	}
}

func TestCrashFSRenameAndRemoveNeedDirSync(t *testing.T) {
	dir := t.TempDir()
	c := NewCrashFS()
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	if err := WriteFileAtomic(c, a, []byte("A")); err != nil {
		t.Fatal(err)
	}
	if err := c.Rename(a, b); err != nil {
		t.Fatal(err)
	}
	names, _ := c.List(dir)
	if len(names) != 1 || names[0] != "b" {
		t.Fatalf("process view after rename: %v", names)
	}
	c, _ = c.Crash(CrashDropUnsynced, nil)
	if got, ok := readDisk(t, a); !ok || string(got) != "A" {
		t.Fatal("rename without a dir sync survived the crash")
	}
	c.Rename(a, b)
	c.SyncDir(dir)
	if _, ok := readDisk(t, a); ok {
		t.Fatal("old name still on disk after dir sync")
	}
	c.Remove(b)
	c, _ = c.Crash(CrashDropUnsynced, nil)
	if _, ok := readDisk(t, b); !ok {
		t.Fatal("remove without a dir sync survived the crash")
	}
	c.Remove(b)
	c.SyncDir(dir)
	if _, ok := readDisk(t, b); ok {
		t.Fatal("removed file still on disk after dir sync")
	}
}

func TestCrashFSTearKeepsAPrefix(t *testing.T) {
	for seed := uint64(0); seed < 50; seed++ {
		dir := t.TempDir()
		c := NewCrashFSWithoutRealSync()
		p := filepath.Join(dir, "f")
		WriteFileAtomic(c, p, []byte("base"))
		f, _ := c.Open(p)
		want := []byte("base")
		var writes [][]byte
		for i := 0; i < 3; i++ {
			w := bytes.Repeat([]byte{byte('a' + i)}, 10)
			f.WriteAt(w, int64(len(want)))
			want = append(want, w...)
			writes = append(writes, w)
		}
		c.Crash(CrashTearUnsynced, rand.New(rand.NewPCG(seed, 0)))
		got, _ := readDisk(t, p)
		if len(got) < 4 || !bytes.Equal(got, want[:len(got)]) {
			t.Fatalf("seed %d: disk %q is not a prefix of %q", seed, got, want)
		}
	}
}

func TestFaultFSPartialWrite(t *testing.T) {
	dir := t.TempDir()
	ff := NewFaultFS(OS{}, func(op Op, _ string, n int) Fault {
		if op == OpWrite {
			return Fault{Err: ENOSPC, PartialBytes: 3}
		}
		return Fault{}
	})
	f, err := ff.Create(filepath.Join(dir, "f"))
	if err != nil {
		t.Fatal(err)
	}
	n, err := f.WriteAt([]byte("abcdef"), 0)
	if n != 3 || !errors.Is(err, ENOSPC) {
		t.Fatalf("partial write: %d %v", n, err)
	}
	f.Close()
}

func TestCrashFSLeavesOtherFilesAlone(t *testing.T) {
	dir := t.TempDir()
	c := NewCrashFS()
	if err := WriteFileAtomic(c, filepath.Join(dir, "mine"), []byte("x")); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(dir, "someone-elses")
	if err := os.WriteFile(other, []byte("y"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := c.Remove(filepath.Join(dir, "mine")); err != nil {
		t.Fatal(err)
	}
	if err := c.SyncDir(dir); err != nil {
		t.Fatal(err)
	}
	if _, ok := readDisk(t, other); !ok {
		t.Fatal("SyncDir deleted a file it did not manage")
	}
	if _, ok := readDisk(t, filepath.Join(dir, "mine")); ok {
		t.Fatal("removed file still on disk")
	}
}

func TestCrashFSOpenHandleSurvivesRemove(t *testing.T) {
	dir := t.TempDir()
	c := NewCrashFS()
	p := filepath.Join(dir, "f")
	WriteFileAtomic(c, p, []byte("content"))
	c, _ = c.Crash(CrashDropUnsynced, nil) // forget the in-memory state: f is only on disk
	f, err := c.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	c.Remove(p)
	c.SyncDir(dir)
	buf := make([]byte, 7)
	if _, err := f.ReadAt(buf, 0); err != nil || string(buf) != "content" {
		t.Fatalf("read after remove: %q %v", buf, err)
	}
}
