package vfs

import (
	"os"
	"sync"
	"syscall"
)

// Op names an operation FaultFS can fail.
type Op int

const (
	OpWrite Op = iota
	OpSync
	OpCreate
	OpRename
	OpRemove
	OpSyncDir
	OpTruncate
	OpPreallocate
)

func (o Op) String() string {
	return [...]string{"write", "sync", "create", "rename", "remove", "syncdir", "truncate", "preallocate"}[o]
}

// Fault is what an Injector decides for one operation.
type Fault struct {
	// Err, when non-nil, fails the operation (wrapped in an *os.PathError).
	Err error
	// PartialBytes, for a failed write, is how many leading bytes are
	// written before the error, as a disk filling up mid-write does.
	PartialBytes int
}

// Injector is consulted before every mutating operation; the zero Fault
// lets it through.
type Injector func(op Op, name string, sizeBytes int) Fault

// ENOSPC and EIO are the errors a full or failing disk returns.
var (
	ENOSPC error = syscall.ENOSPC
	EIO    error = syscall.EIO
)

// FaultFS wraps an FS and fails the operations its Injector chooses.
type FaultFS struct {
	base FS
	mu   sync.Mutex
	// inject is guarded by mu so tests can change it while storage runs.
	inject Injector
}

// NewFaultFS wraps base; inject may be nil (no faults) and set later.
func NewFaultFS(base FS, inject Injector) *FaultFS { return &FaultFS{base: base, inject: inject} }

// SetInjector replaces the injector.
func (f *FaultFS) SetInjector(inject Injector) {
	f.mu.Lock()
	f.inject = inject
	f.mu.Unlock()
}

func (f *FaultFS) fault(op Op, name string, sizeBytes int) Fault {
	f.mu.Lock()
	inject := f.inject
	f.mu.Unlock()
	if inject == nil {
		return Fault{}
	}
	return inject(op, name, sizeBytes)
}

func (f *FaultFS) fail(op Op, name string) error {
	if ft := f.fault(op, name, 0); ft.Err != nil {
		return &os.PathError{Op: op.String(), Path: name, Err: ft.Err}
	}
	return nil
}

var _ FS = (*FaultFS)(nil)

// Create implements FS.
func (f *FaultFS) Create(name string) (File, error) {
	if err := f.fail(OpCreate, name); err != nil {
		return nil, err
	}
	file, err := f.base.Create(name)
	if err != nil {
		return nil, err
	}
	return &faultFile{File: file, fs: f, name: name}, nil
}

// Open implements FS.
func (f *FaultFS) Open(name string) (File, error) {
	file, err := f.base.Open(name)
	if err != nil {
		return nil, err
	}
	return &faultFile{File: file, fs: f, name: name}, nil
}

// Rename implements FS.
func (f *FaultFS) Rename(oldname, newname string) error {
	if err := f.fail(OpRename, newname); err != nil {
		return err
	}
	return f.base.Rename(oldname, newname)
}

// Remove implements FS.
func (f *FaultFS) Remove(name string) error {
	if err := f.fail(OpRemove, name); err != nil {
		return err
	}
	return f.base.Remove(name)
}

// List implements FS.
func (f *FaultFS) List(dir string) ([]string, error) { return f.base.List(dir) }

// MkdirAll implements FS.
func (f *FaultFS) MkdirAll(dir string) error { return f.base.MkdirAll(dir) }

// SyncDir implements FS.
func (f *FaultFS) SyncDir(dir string) error {
	if err := f.fail(OpSyncDir, dir); err != nil {
		return err
	}
	return f.base.SyncDir(dir)
}

type faultFile struct {
	File
	fs   *FaultFS
	name string
}

func (f *faultFile) WriteAt(p []byte, off int64) (int, error) {
	ft := f.fs.fault(OpWrite, f.name, len(p))
	if ft.Err == nil {
		return f.File.WriteAt(p, off)
	}
	n := 0
	if ft.PartialBytes > 0 {
		n, _ = f.File.WriteAt(p[:min(ft.PartialBytes, len(p))], off)
	}
	return n, &os.PathError{Op: "write", Path: f.name, Err: ft.Err}
}

func (f *faultFile) Sync() error {
	if err := f.fs.fail(OpSync, f.name); err != nil {
		return err
	}
	return f.File.Sync()
}

func (f *faultFile) ZeroFill(sizeBytes int64) error {
	if ft := f.fs.fault(OpWrite, f.name, int(sizeBytes)); ft.Err != nil {
		return &os.PathError{Op: "write", Path: f.name, Err: ft.Err}
	}
	return f.File.ZeroFill(sizeBytes)
}

func (f *faultFile) Truncate(sizeBytes int64) error {
	if err := f.fs.fail(OpTruncate, f.name); err != nil {
		return err
	}
	return f.File.Truncate(sizeBytes)
}

func (f *faultFile) Preallocate(sizeBytes int64) error {
	if err := f.fs.fail(OpPreallocate, f.name); err != nil {
		return err
	}
	return f.File.Preallocate(sizeBytes)
}
