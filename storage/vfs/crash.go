package vfs

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
)

// stagingPrefix names the on-disk files that hold the synced content of a
// file whose directory entry is not durable yet. A crash leaves them behind
// as garbage (like an orphaned inode); CrashFS deletes them when it next
// loads the directory and never lists them.
const stagingPrefix = ".crashfs-staging-"

// CrashFS is a file system over the real one that keeps everything a power
// cut may lose in this process's memory:
//
//   - a write or truncation reaches the disk only when its file is synced;
//   - a created, renamed or removed directory entry reaches the disk only
//     when its directory is synced (until then, the synced content of a new
//     file sits in a staging file with a hidden name).
//
// Reads see the process's view (disk content with the unsynced operations
// applied). Crash forgets the unsynced state, optionally letting a prefix of
// the unsynced writes reach the disk first, torn at a byte.
//
// Directory creation (MkdirAll) is not simulated: it is durable at once.
// CrashFS is for tests and the crashtest build; it is slower than OS.
type CrashFS struct {
	mu sync.Mutex
	// dirs holds the process's view of every directory touched so far,
	// keyed by cleaned path. Guarded by mu.
	dirs map[string]*crashDir
	// generation increases at every Crash; handles of an older generation
	// fail. Guarded by mu.
	generation uint64
	// stagingSeq numbers staging files. Guarded by mu.
	stagingSeq uint64
	// crashed is set by Crash: the process that used this FS is dead, so
	// every later operation fails. Guarded by mu.
	crashed bool
	// skipRealSync leaves out the real fdatasync/fsync under the simulated
	// ones: for in-process tests, where only the simulated power cut matters.
	skipRealSync bool
}

type crashDir struct {
	names map[string]*crashNode
	// gone holds names removed or renamed away since the last SyncDir:
	// the only disk entries SyncDir may delete (files other processes
	// create in the same directory are never touched).
	gone map[string]bool
}

// crashNode is an inode: the same node may be reachable under no name (an
// open file that was removed) or be renamed while open.
type crashNode struct {
	homeDir  string   // where its staging file goes
	disk     *os.File // the on-disk file holding the synced content; nil if none
	diskPath string   // current on-disk path of disk ("" if none)
	diskSize int64    // size of the synced content
	size     int64    // size in the process's view
	ops      []crashOp
	// handles counts open crashFiles: the disk descriptor is closed when
	// it drops to zero, so removed files do not pin disk space.
	handles int
}

// crashOp is one unsynced operation: a write of data at off, or (when
// truncate is set) setting the size to off.
type crashOp struct {
	off      int64
	data     []byte
	truncate bool
}

// CrashMode says what reaches the disk at a Crash.
type CrashMode int

const (
	// CrashDropUnsynced loses every unsynced write and directory change.
	CrashDropUnsynced CrashMode = iota
	// CrashTearUnsynced lets a random prefix of each durable-named file's
	// unsynced operations reach the disk, the last of them torn at a random
	// byte (the writes of an interrupted write-back).
	CrashTearUnsynced
	// CrashKeepUnsynced lets every unsynced write of each durable-named file
	// reach the disk (the cache was written back but never acknowledged).
	CrashKeepUnsynced
	// CrashScatterUnsynced lets a random subset of the 512-byte sectors of
	// each durable-named file's unsynced writes reach the disk, in no
	// order (a disk reordering an interrupted write-back).
	CrashScatterUnsynced
)

// NewCrashFS returns a CrashFS over the real file system.
func NewCrashFS() *CrashFS { return &CrashFS{dirs: make(map[string]*crashDir)} }

// NewCrashFSWithoutRealSync returns a CrashFS whose syncs only move data
// from memory to the disk's page cache, without a real fdatasync: for
// in-process tests, which simulate the power cut with Crash and do not need
// the real disk to survive one.
func NewCrashFSWithoutRealSync() *CrashFS {
	c := NewCrashFS()
	c.skipRealSync = true
	return c
}

var (
	errStaleHandle = errors.New("crashfs: file handle from before a simulated crash")
	errCrashed     = errors.New("crashfs: the simulated machine crashed; use the CrashFS Crash returned")
)

var _ FS = (*CrashFS)(nil)

// dir returns the view of dir, loading it from disk on first use. Must be
// called with mu held.
func (c *CrashFS) dir(dir string) (*crashDir, error) {
	if c.crashed {
		return nil, errCrashed
	}
	dir = filepath.Clean(dir)
	if d, ok := c.dirs[dir]; ok {
		return d, nil
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	d := &crashDir{names: make(map[string]*crashNode), gone: make(map[string]bool)}
	for _, e := range ents {
		if !e.Type().IsRegular() {
			continue
		}
		p := filepath.Join(dir, e.Name())
		if strings.HasPrefix(e.Name(), stagingPrefix) {
			// Content of a file whose name never became durable.
			if err := os.Remove(p); err != nil {
				return nil, err
			}
			continue
		}
		info, err := e.Info()
		if err != nil {
			return nil, err
		}
		d.names[e.Name()] = &crashNode{homeDir: dir, diskPath: p, diskSize: info.Size(), size: info.Size()}
	}
	c.dirs[dir] = d
	return d, nil
}

func (c *CrashFS) lookup(name string) (*crashDir, string, error) {
	d, err := c.dir(filepath.Dir(name))
	if err != nil {
		return nil, "", err
	}
	return d, filepath.Base(name), nil
}

// Create implements FS.
func (c *CrashFS) Create(name string) (File, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	d, base, err := c.lookup(name)
	if err != nil {
		return nil, err
	}
	n, ok := d.names[base]
	if ok {
		n.ops = append(n.ops, crashOp{off: 0, truncate: true})
		n.size = 0
	} else {
		n = &crashNode{homeDir: filepath.Dir(filepath.Clean(name))}
		d.names[base] = n
	}
	n.handles++
	return &crashFile{fs: c, n: n, name: name, generation: c.generation}, nil
}

// Open implements FS.
func (c *CrashFS) Open(name string) (File, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	d, base, err := c.lookup(name)
	if err != nil {
		return nil, err
	}
	n, ok := d.names[base]
	if !ok {
		return nil, &os.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
	n.handles++
	return &crashFile{fs: c, n: n, name: name, generation: c.generation}, nil
}

// Rename implements FS.
func (c *CrashFS) Rename(oldname, newname string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	od, obase, err := c.lookup(oldname)
	if err != nil {
		return err
	}
	nd, nbase, err := c.lookup(newname)
	if err != nil {
		return err
	}
	n, ok := od.names[obase]
	if !ok {
		return &os.LinkError{Op: "rename", Old: oldname, New: newname, Err: fs.ErrNotExist}
	}
	if old, ok := nd.names[nbase]; ok && old != n && old.handles > 0 {
		// Replaced: open handles keep its content, as after rename(2).
		if err := old.openDisk(); err != nil {
			return err
		}
	}
	delete(od.names, obase)
	od.gone[obase] = true
	nd.names[nbase] = n
	return nil
}

// Remove implements FS.
func (c *CrashFS) Remove(name string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	d, base, err := c.lookup(name)
	if err != nil {
		return err
	}
	n, ok := d.names[base]
	if !ok {
		return &os.PathError{Op: "remove", Path: name, Err: fs.ErrNotExist}
	}
	// Open handles keep the content after the name is gone, as after
	// unlink(2): hold a descriptor before the disk entry can disappear.
	if n.handles > 0 {
		if err := n.openDisk(); err != nil {
			return err
		}
	}
	delete(d.names, base)
	d.gone[base] = true
	return nil
}

// List implements FS.
func (c *CrashFS) List(dir string) ([]string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	d, err := c.dir(dir)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(d.names))
	for name := range d.names {
		names = append(names, name)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	for _, e := range ents {
		if e.IsDir() {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	return names, nil
}

// MkdirAll implements FS. Directory creation is durable at once.
func (c *CrashFS) MkdirAll(dir string) error {
	c.mu.Lock()
	crashed := c.crashed
	c.mu.Unlock()
	if crashed {
		return errCrashed
	}
	return os.MkdirAll(dir, 0o755)
}

// SyncDir implements FS: the process's view of dir's entries becomes the
// disk's, then the real directory is synced.
func (c *CrashFS) SyncDir(dir string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	dir = filepath.Clean(dir)
	d, err := c.dir(dir)
	if err != nil {
		return err
	}
	// Phase 1: move the disk file of every entry that changed to a fresh
	// staging name, so that phase 2 can place them in any permutation.
	var moved []string
	for name, n := range d.names {
		want := filepath.Join(dir, name)
		if n.diskPath == want {
			continue
		}
		if n.disk == nil && n.diskPath == "" {
			if err := c.createStaging(n); err != nil {
				return err
			}
		}
		staging := c.stagingPath(dir)
		if err := os.Rename(n.diskPath, staging); err != nil {
			return err
		}
		n.diskPath = staging
		moved = append(moved, name)
	}
	// Phase 2: staging files to their names.
	for _, name := range moved {
		n := d.names[name]
		want := filepath.Join(dir, name)
		if err := os.Rename(n.diskPath, want); err != nil {
			return err
		}
		n.diskPath = want
	}
	// Phase 3: names removed or renamed away that are still on disk.
	for name := range d.gone {
		if _, ok := d.names[name]; ok {
			continue
		}
		p := filepath.Join(dir, name)
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		// A node still open under no name keeps its descriptor; its
		// content is now an orphan, as after unlink(2).
		c.forgetDiskPath(p)
	}
	clear(d.gone)
	if c.skipRealSync {
		return nil
	}
	return OS{}.SyncDir(dir)
}

// forgetDiskPath clears diskPath of the (unnamed) node whose disk file was
// just removed, so a later SyncDir does not try to rename it.
func (c *CrashFS) forgetDiskPath(p string) {
	for _, d := range c.dirs {
		for _, n := range d.names {
			if n.diskPath == p {
				n.diskPath = ""
			}
		}
	}
}

func (c *CrashFS) stagingPath(dir string) string {
	c.stagingSeq++
	return filepath.Join(dir, fmt.Sprintf("%s%d-%d", stagingPrefix, os.Getpid(), c.stagingSeq))
}

func (c *CrashFS) createStaging(n *crashNode) error {
	p := c.stagingPath(n.homeDir)
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	n.disk, n.diskPath, n.diskSize = f, p, 0
	return nil
}

// openDisk opens n's disk file if it has one and it is not open yet.
func (n *crashNode) openDisk() error {
	if n.disk != nil || n.diskPath == "" {
		return nil
	}
	f, err := os.OpenFile(n.diskPath, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	n.disk = f
	return nil
}

// applyOps writes ops to n's disk file (creating a staging file if needed).
// The last op is cut to partialBytes when partialBytes >= 0.
func (c *CrashFS) applyOps(n *crashNode, ops []crashOp, partialBytes int) error {
	if n.disk == nil {
		if n.diskPath == "" {
			if err := c.createStaging(n); err != nil {
				return err
			}
		} else if err := n.openDisk(); err != nil {
			return err
		}
	}
	size := n.diskSize
	for i, op := range ops {
		if op.truncate {
			if err := n.disk.Truncate(op.off); err != nil {
				return err
			}
			size = op.off
			continue
		}
		data := op.data
		if i == len(ops)-1 && partialBytes >= 0 && partialBytes < len(data) {
			data = data[:partialBytes]
		}
		if _, err := n.disk.WriteAt(data, op.off); err != nil {
			return err
		}
		size = max(size, op.off+int64(len(data)))
	}
	n.diskSize = size
	return nil
}

// applyScattered writes a random subset of the sectors of n's unsynced
// writes (truncations are applied in full, in order).
func (c *CrashFS) applyScattered(n *crashNode, rng *rand.Rand) error {
	var kept []crashOp
	for _, op := range n.ops {
		if op.truncate {
			kept = append(kept, op)
			continue
		}
		for lo := op.off; lo < op.off+int64(len(op.data)); {
			hi := min((lo/512+1)*512, op.off+int64(len(op.data)))
			if rng.IntN(2) == 0 {
				kept = append(kept, crashOp{off: lo, data: op.data[lo-op.off : hi-op.off]})
			}
			lo = hi
		}
	}
	return c.applyOps(n, kept, -1)
}

// Crash simulates a power cut: the unsynced state is forgotten (after
// letting part of it reach the disk, as mode says, using rng) and this
// CrashFS fails every later operation, as the dead process would never
// issue one (goroutines of the crashed code still running cannot leak
// writes into the disk state). The returned CrashFS is the rebooted
// machine: it sees only the disk.
func (c *CrashFS) Crash(mode CrashMode, rng *rand.Rand) (*CrashFS, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.crashed {
		return nil, errCrashed
	}
	var firstErr error
	for dir, d := range c.dirs {
		names := make([]string, 0, len(d.names))
		for name := range d.names {
			names = append(names, name)
		}
		sort.Strings(names) // deterministic use of rng
		for _, name := range names {
			n := d.names[name]
			if mode == CrashDropUnsynced || len(n.ops) == 0 || n.diskPath != filepath.Join(dir, name) {
				continue
			}
			if mode == CrashScatterUnsynced {
				if err := c.applyScattered(n, rng); err != nil && firstErr == nil {
					firstErr = err
				}
				continue
			}
			ops, partial := n.ops, -1
			if mode == CrashTearUnsynced {
				k := rng.IntN(len(n.ops)) + 1
				ops = n.ops[:k]
				if last := ops[k-1]; !last.truncate {
					partial = rng.IntN(len(last.data) + 1)
				}
			}
			if err := c.applyOps(n, ops, partial); err != nil && firstErr == nil {
				firstErr = err
			}
		}
	}
	for _, d := range c.dirs {
		for _, n := range d.names {
			if n.disk != nil {
				n.disk.Close()
			}
		}
	}
	c.dirs = make(map[string]*crashDir)
	c.generation++
	c.crashed = true
	return &CrashFS{dirs: make(map[string]*crashDir), skipRealSync: c.skipRealSync}, firstErr
}

type crashFile struct {
	fs         *CrashFS
	n          *crashNode
	name       string
	generation uint64
	closed     bool
}

// check must be called with fs.mu held.
func (f *crashFile) check() error {
	if f.closed {
		return os.ErrClosed
	}
	if f.generation != f.fs.generation {
		return errStaleHandle
	}
	return nil
}

func (f *crashFile) ReadAt(p []byte, off int64) (int, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.check(); err != nil {
		return 0, err
	}
	n := f.n
	if off >= n.size {
		return 0, io.EOF
	}
	count := int(min(int64(len(p)), n.size-off))
	buf := p[:count]
	clear(buf)
	if err := n.openDisk(); err != nil {
		return 0, err
	}
	if n.disk != nil && off < n.diskSize {
		m := int(min(int64(count), n.diskSize-off))
		if _, err := n.disk.ReadAt(buf[:m], off); err != nil && !errors.Is(err, io.EOF) {
			return 0, err
		}
	}
	end := off + int64(count)
	for _, op := range n.ops {
		if op.truncate {
			if op.off < end {
				clear(buf[max(op.off-off, 0):])
			}
			continue
		}
		lo, hi := max(op.off, off), min(op.off+int64(len(op.data)), end)
		if lo < hi {
			copy(buf[lo-off:hi-off], op.data[lo-op.off:hi-op.off])
		}
	}
	if count < len(p) {
		return count, io.EOF
	}
	return count, nil
}

func (f *crashFile) WriteAt(p []byte, off int64) (int, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.check(); err != nil {
		return 0, err
	}
	f.n.ops = append(f.n.ops, crashOp{off: off, data: append([]byte(nil), p...)})
	f.n.size = max(f.n.size, off+int64(len(p)))
	return len(p), nil
}

func (f *crashFile) Truncate(sizeBytes int64) error {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.check(); err != nil {
		return err
	}
	f.n.ops = append(f.n.ops, crashOp{off: sizeBytes, truncate: true})
	f.n.size = sizeBytes
	return nil
}

func (f *crashFile) Preallocate(sizeBytes int64) error {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.check(); err != nil {
		return err
	}
	if sizeBytes > f.n.size {
		f.n.ops = append(f.n.ops, crashOp{off: sizeBytes, truncate: true})
		f.n.size = sizeBytes
	}
	return nil
}

// ZeroFill extends the file to sizeBytes: the simulated disk has no
// extents to convert, so writing the zeros would only cost memory.
func (f *crashFile) ZeroFill(sizeBytes int64) error { return f.Preallocate(sizeBytes) }

func (f *crashFile) Size() (int64, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.check(); err != nil {
		return 0, err
	}
	return f.n.size, nil
}

// Sync writes the file's unsynced operations to its disk file and syncs it.
func (f *crashFile) Sync() error {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.check(); err != nil {
		return err
	}
	n := f.n
	if len(n.ops) > 0 || n.disk == nil {
		if err := f.fs.applyOps(n, n.ops, -1); err != nil {
			return err
		}
		n.ops = nil
	}
	if f.fs.skipRealSync {
		return nil
	}
	return datasync(n.disk)
}

func (f *crashFile) Close() error {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if f.closed {
		return os.ErrClosed
	}
	f.closed = true
	if f.generation != f.fs.generation {
		return nil // the crash closed every descriptor
	}
	n := f.n
	n.handles--
	if n.handles == 0 && n.disk != nil && len(n.ops) == 0 {
		// Reopened from diskPath when needed; an unnamed node's content is
		// gone with its last handle, as after unlink(2).
		err := n.disk.Close()
		n.disk = nil
		return err
	}
	return nil
}
