package node

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/edgekv/edgekv/consensus/raftmsg"
	"github.com/edgekv/edgekv/storage"
	"github.com/edgekv/edgekv/storage/snapfile"
)

// SnapshotStore is the snapshot half of a member's durable storage. A
// LogStore that also implements it lets the member take snapshots (and so
// drop its log), send them to followers that fell behind, and install the
// ones it receives; without it the member keeps its whole log.
//
// Snapshot files are storage/snapfile files: the Raft meta, the membership
// blob (snapblob.go) and the kv snapshot as payload, all checksummed.
type SnapshotStore interface {
	// SaveSnapshot durably writes the snapshot of the state after applying
	// meta.Index (the payload from writePayload), then drops the log
	// entries up to it. Safe to call while Save runs on another goroutine.
	SaveSnapshot(meta raftmsg.SnapshotMeta, membership []byte, writePayload func(io.Writer) error) error
	// OpenSnapshotFile opens the newest snapshot's file bytes, as sent to a
	// follower; nil (and no error) when there is none.
	OpenSnapshotFile() (SnapshotFile, error)
	// HoldSnapshot receives a snapshot file from the leader and keeps it
	// aside, verified (checksums) but NOT part of the durable state: the
	// Raft core decides later whether it may replace the log.
	HoldSnapshot(r io.Reader) (HeldSnapshot, error)
	// InstallSnapshot makes a held snapshot the durable state and resets
	// the log: every entry before it is dropped (Raft paper §7). It
	// releases h.
	InstallSnapshot(h HeldSnapshot) (raftmsg.SnapshotMeta, error)
	// OpenSnapshot opens the newest snapshot's payload; nil when none.
	OpenSnapshot() (*OpenedSnapshot, error)
}

// SnapshotFile is the raw bytes of one snapshot file.
type SnapshotFile interface {
	io.ReaderAt
	io.Closer
	Size() int64
	Meta() raftmsg.SnapshotMeta
}

// HeldSnapshot is a received snapshot file kept aside until the core
// accepts it (InstallSnapshot) or refuses it (Discard).
type HeldSnapshot interface {
	Meta() raftmsg.SnapshotMeta
	Size() int64
	// Discard removes it; it is a no-op after InstallSnapshot.
	Discard()
}

// OpenedSnapshot is a snapshot opened for restoring the state machine.
type OpenedSnapshot struct {
	Meta       raftmsg.SnapshotMeta
	Membership []byte
	Payload    io.Reader
	close      func() error
}

// Close releases the snapshot's file.
func (o *OpenedSnapshot) Close() error {
	if o.close == nil {
		return nil
	}
	return o.close()
}

// DiskStore is the LogStore and SnapshotStore of a data dir: the storage
// facade, plus a place beside it for snapshots received and held aside.
type DiskStore struct {
	*storage.Storage
	holdDir string
}

// maxHeldSnapshotBytes bounds a received snapshot (storage's own bound on
// what InstallSnapshot accepts).
const maxHeldSnapshotBytes = 64 << 30

// holdPattern names held snapshot files in the data dir (outside storage's
// wal/ and snap/ directories, which only storage writes).
const holdPattern = "incoming-*.snap.hold"

// NewDiskStore wraps an open storage of dataDir, removing held snapshot
// files a previous process left behind (they were never installed).
func NewDiskStore(st *storage.Storage, dataDir string) (*DiskStore, error) {
	stale, err := filepath.Glob(filepath.Join(dataDir, holdPattern))
	if err != nil {
		return nil, err
	}
	for _, p := range stale {
		if err := os.Remove(p); err != nil {
			return nil, fmt.Errorf("node: remove a snapshot held by a previous run: %w", err)
		}
	}
	return &DiskStore{Storage: st, holdDir: dataDir}, nil
}

var _ SnapshotStore = (*DiskStore)(nil)

// OpenSnapshotFile implements SnapshotStore.
func (d *DiskStore) OpenSnapshotFile() (SnapshotFile, error) {
	rc, size, meta, err := d.Storage.SnapshotFile()
	if err != nil || rc == nil {
		return nil, err
	}
	return &seqFile{rc: rc, size: size, meta: meta, reopen: d.Storage.SnapshotFile}, nil
}

// seqFile turns storage's sequential snapshot reader into the io.ReaderAt
// the transport reads: reads at the current offset go on; a read from
// offset 0 after that (a restarted stream) reopens the file, and fails if
// a newer snapshot replaced it meanwhile (the core then sends the newer
// one). Any other offset is refused.
type seqFile struct {
	rc     io.ReadCloser
	off    int64
	size   int64
	meta   raftmsg.SnapshotMeta
	reopen func() (io.ReadCloser, int64, raftmsg.SnapshotMeta, error)
}

func (f *seqFile) Size() int64                { return f.size }
func (f *seqFile) Meta() raftmsg.SnapshotMeta { return f.meta }

func (f *seqFile) ReadAt(p []byte, off int64) (int, error) {
	if off == 0 && f.off != 0 {
		rc, size, meta, err := f.reopen()
		if err != nil {
			return 0, err
		}
		if rc == nil || meta.Index != f.meta.Index || meta.Term != f.meta.Term || size != f.size {
			if rc != nil {
				rc.Close()
			}
			return 0, fmt.Errorf("node: snapshot %d/%d was replaced while being sent", f.meta.Index, f.meta.Term)
		}
		f.rc.Close()
		f.rc, f.off = rc, 0
	}
	if off != f.off {
		return 0, fmt.Errorf("node: snapshot file read at %d, expected %d", off, f.off)
	}
	n, err := io.ReadFull(f.rc, p)
	f.off += int64(n)
	if err == io.ErrUnexpectedEOF {
		err = io.EOF
	}
	return n, err
}

func (f *seqFile) Close() error { return f.rc.Close() }

// HoldSnapshot implements SnapshotStore: the bytes go to a file beside the
// storage directories and are verified in full there.
func (d *DiskStore) HoldSnapshot(r io.Reader) (HeldSnapshot, error) {
	f, err := os.CreateTemp(d.holdDir, holdPattern)
	if err != nil {
		return nil, fmt.Errorf("node: hold received snapshot: %w", err)
	}
	h := &diskHeld{f: f}
	n, err := io.Copy(f, io.LimitReader(r, maxHeldSnapshotBytes+1))
	if err != nil {
		h.Discard()
		return nil, fmt.Errorf("node: receive snapshot: %w", err)
	}
	if n > maxHeldSnapshotBytes {
		h.Discard()
		return nil, fmt.Errorf("node: received snapshot exceeds %d bytes", int64(maxHeldSnapshotBytes))
	}
	info, err := snapfile.Verify(f, n, f.Name())
	if err != nil {
		h.Discard()
		return nil, fmt.Errorf("node: received snapshot: %w", err)
	}
	h.meta, h.size = info.Meta, n
	return h, nil
}

type diskHeld struct {
	f    *os.File
	meta raftmsg.SnapshotMeta
	size int64
}

func (h *diskHeld) Meta() raftmsg.SnapshotMeta { return h.meta }
func (h *diskHeld) Size() int64                { return h.size }

func (h *diskHeld) Discard() {
	if h.f == nil {
		return
	}
	h.f.Close()
	os.Remove(h.f.Name())
	h.f = nil
}

// InstallSnapshot implements SnapshotStore.
func (d *DiskStore) InstallSnapshot(held HeldSnapshot) (raftmsg.SnapshotMeta, error) {
	h, ok := held.(*diskHeld)
	if !ok || h.f == nil {
		return raftmsg.SnapshotMeta{}, errors.New("node: install of a snapshot this store does not hold")
	}
	defer h.Discard()
	meta, err := d.Storage.InstallSnapshot(io.NewSectionReader(h.f, 0, h.size))
	if err != nil {
		return meta, err
	}
	if meta.Index != h.meta.Index || meta.Term != h.meta.Term {
		return meta, fmt.Errorf("node: installed snapshot %d/%d, held %d/%d", meta.Index, meta.Term, h.meta.Index, h.meta.Term)
	}
	return meta, nil
}

// OpenSnapshot implements SnapshotStore.
func (d *DiskStore) OpenSnapshot() (*OpenedSnapshot, error) {
	s, err := d.Storage.OpenSnapshot()
	if err != nil || s == nil {
		return nil, err
	}
	return openedFromStorage(s), nil
}

func openedFromStorage(s *storage.Snapshot) *OpenedSnapshot {
	return &OpenedSnapshot{Meta: s.Meta, Membership: s.Membership, Payload: s.Payload, close: s.Close}
}

// memHeld is a held snapshot in memory (MemStore).
type memHeld struct {
	raw  []byte
	meta raftmsg.SnapshotMeta
}

func (h *memHeld) Meta() raftmsg.SnapshotMeta { return h.meta }
func (h *memHeld) Size() int64                { return int64(len(h.raw)) }
func (h *memHeld) Discard()                   { h.raw = nil }

// openSnapfileBytes verifies an in-memory snapshot file and opens its payload.
func openSnapfileBytes(raw []byte) (*OpenedSnapshot, error) {
	r := bytes.NewReader(raw)
	info, err := snapfile.Verify(r, int64(len(raw)), "snapshot")
	if err != nil {
		return nil, err
	}
	payload, err := info.Payload(r, "snapshot")
	if err != nil {
		return nil, err
	}
	return &OpenedSnapshot{Meta: info.Meta, Membership: info.Membership, Payload: payload, close: payload.Close}, nil
}
