// Package vfs is the file-system layer under edgekv's durable storage: the
// only place the write-ahead log, snapshot files and the data-dir metadata
// touch files and directories.
//
// It exists so that durability can be tested. Three implementations share
// the FS interface:
//
//   - OS: the real file system. File.Sync is fdatasync(2) on Linux,
//     SyncDir opens the directory and fsyncs it.
//   - CrashFS: holds every write in process memory until the file is synced,
//     and every created, renamed or removed directory entry until the
//     directory is synced. Crash() forgets all of it (optionally letting a
//     prefix of the unsynced writes reach the disk, torn at a byte), which is
//     exactly what a power cut may lose. Under the `crashtest` build tag
//     Default() returns a CrashFS, so a kill -9 of such a binary loses what
//     a power cut would instead of leaving the page cache intact.
//   - FaultFS: wraps another FS and fails chosen operations (ENOSPC, EIO),
//     optionally after writing a prefix of the data, as a full or failing
//     disk does.
//
// This package must never buffer or reorder writes itself outside CrashFS,
// never retry a failed sync (after a failed fsync the page cache can no
// longer be trusted: the caller must reopen from disk), and never hide an
// error from the caller.
package vfs

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
)

// File is an open file. Offsets are explicit: the log writes at offsets it
// tracks itself, so no shared seek position exists to race on.
type File interface {
	io.ReaderAt
	io.WriterAt
	io.Closer
	// Sync makes the file's data (and the size needed to read it back)
	// durable: fdatasync(2) on Linux.
	Sync() error
	// Truncate sets the file's size; bytes past the old size read as zero.
	Truncate(sizeBytes int64) error
	// Preallocate reserves space for sizeBytes and extends the file to that
	// size (reads past the written data return zeros), so that later writes
	// inside it need no allocation and a full disk shows up early.
	Preallocate(sizeBytes int64) error
	// ZeroFill writes zeros over [0, sizeBytes), so that later overwrites
	// (and their fdatasync) need no block allocation or unwritten-extent
	// conversion, only the data. It does not sync.
	ZeroFill(sizeBytes int64) error
	// Size is the file's current size.
	Size() (int64, error)
}

// FS is a file system. Names are paths as understood by path/filepath.
type FS interface {
	// Create creates or truncates a file for reading and writing.
	Create(name string) (File, error)
	// Open opens an existing file for reading and writing.
	Open(name string) (File, error)
	Rename(oldname, newname string) error
	Remove(name string) error
	// List returns the names (not paths) of the entries of dir, sorted.
	List(dir string) ([]string, error)
	MkdirAll(dir string) error
	// SyncDir makes the directory's entries durable (creations, renames and
	// removals done in it so far).
	SyncDir(dir string) error
}

// OS is the real file system.
type OS struct{}

var _ FS = OS{}

// Create implements FS.
func (OS) Create(name string) (File, error) {
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, err
	}
	return osFile{f}, nil
}

// Open implements FS.
func (OS) Open(name string) (File, error) {
	f, err := os.OpenFile(name, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	return osFile{f}, nil
}

// Rename implements FS.
func (OS) Rename(oldname, newname string) error { return os.Rename(oldname, newname) }

// Remove implements FS.
func (OS) Remove(name string) error { return os.Remove(name) }

// MkdirAll implements FS.
func (OS) MkdirAll(dir string) error { return os.MkdirAll(dir, 0o755) }

// List implements FS.
func (OS) List(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(ents))
	for _, e := range ents {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	return names, nil
}

// SyncDir implements FS.
func (OS) SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

type osFile struct{ f *os.File }

func (o osFile) ReadAt(p []byte, off int64) (int, error)  { return o.f.ReadAt(p, off) }
func (o osFile) WriteAt(p []byte, off int64) (int, error) { return o.f.WriteAt(p, off) }
func (o osFile) Close() error                             { return o.f.Close() }
func (o osFile) Sync() error                              { return datasync(o.f) }
func (o osFile) Truncate(sizeBytes int64) error           { return o.f.Truncate(sizeBytes) }
func (o osFile) Preallocate(sizeBytes int64) error        { return preallocate(o.f, sizeBytes) }
func (o osFile) ZeroFill(sizeBytes int64) error {
	zeros := make([]byte, min(zeroChunkBytes, sizeBytes))
	for off := int64(0); off < sizeBytes; off += int64(len(zeros)) {
		if _, err := o.f.WriteAt(zeros[:min(int64(len(zeros)), sizeBytes-off)], off); err != nil {
			return err
		}
	}
	return nil
}

// zeroChunkBytes is the write size ZeroFill uses.
const zeroChunkBytes = 1 << 20

func (o osFile) Size() (int64, error) {
	st, err := o.f.Stat()
	if err != nil {
		return 0, err
	}
	return st.Size(), nil
}

// Writer appends to a File sequentially from an offset.
type Writer struct {
	f   File
	off int64
}

// NewWriter returns a Writer writing f from offset off.
func NewWriter(f File, off int64) *Writer { return &Writer{f: f, off: off} }

// Write implements io.Writer.
func (w *Writer) Write(p []byte) (int, error) {
	n, err := w.f.WriteAt(p, w.off)
	w.off += int64(n)
	return n, err
}

// Offset is the offset of the next write.
func (w *Writer) Offset() int64 { return w.off }

// ReadFile reads a whole file, refusing files larger than maxBytes so a
// damaged or foreign file cannot make the caller allocate without bound.
func ReadFile(fs FS, name string, maxBytes int64) ([]byte, error) {
	f, err := fs.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	size, err := f.Size()
	if err != nil {
		return nil, err
	}
	if size > maxBytes {
		return nil, fmt.Errorf("%s: %d bytes, more than the %d allowed", name, size, maxBytes)
	}
	buf := make([]byte, size)
	n, err := f.ReadAt(buf, 0)
	if err != nil && !(errors.Is(err, io.EOF) && int64(n) == size) {
		return nil, err
	}
	return buf, nil
}

// WriteFileAtomic writes data to name so that after a crash name holds
// either its old content or data, never a mix: a temporary file is written
// and synced, renamed over name, and the directory synced.
func WriteFileAtomic(fs FS, name string, data []byte) error {
	tmp := name + ".tmp"
	f, err := fs.Create(tmp)
	if err != nil {
		return err
	}
	if _, err := f.WriteAt(data, 0); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := fs.Rename(tmp, name); err != nil {
		return err
	}
	return fs.SyncDir(filepath.Dir(name))
}
