// Package storage is the durable storage the node runtime uses: it opens a
// data dir (checking its metadata file), replays the write-ahead log after
// the newest snapshot, saves Raft entries and hard state with group commit,
// and writes, installs, serves and prunes snapshot files.
//
// Layout of a data dir:
//
//	edgekv-meta.json      format version, cluster id, node name, member id
//	wal/%016x.wal         log segments (package wal)
//	snap/%016x-%016x.snap snapshot files, index-term (package snapfile)
//
// It must never acknowledge a write before it is durable, never make a
// snapshot visible (rename it into place, reference it from the log) before
// it is complete, checksummed and synced, never remove log segments before
// the snapshot covering them is durable, and never start on a data dir that
// belongs to another node or cluster or whose synced data is damaged.
//
// How the node runtime uses it:
//
//	st, rec, err := storage.Open(dir, storage.Options{Identity: ..., Compression: c, SnapshotKeep: k, Logger: l})
//	// err: ErrMetaMismatch (other node/cluster, newer format), ErrCorrupt
//	// (damaged synced data, names file and offset): exit with the message.
//	// rec.Meta.MemberID is this node's id; restore the state machine from
//	// rec.Snapshot (Payload, Membership, Meta; Close it), then apply
//	// rec.Entries up to rec.HardState.Commit.
//	st.SaveAsync(rd.HardState, rd.Entries, func(err error) { ... })
//	// per Raft Ready: durable in submission order, one fdatasync shared by
//	// everything queued meanwhile; send the messages that wait for it
//	// (votes, append acks) only from the callback with err == nil. Save is
//	// the blocking form. ErrNoSpace/ErrIO: nothing written, answer 507,
//	// resubmit from LastIndex()+1 later; ErrFailed: reopen the storage.
//	st.SaveSnapshot(meta, membership, func(w io.Writer) error { ... })
//	// from an immutable view; also prunes snapshots and log segments.
//	rc, size, meta, err := st.SnapshotFile() // raw bytes for MsgSnap
//	meta, err := st.InstallSnapshot(r)        // on a follower; then OpenSnapshot
//	st.Close()
//
// Crash safety of snapshots: a snapshot is written to a temporary file,
// synced, renamed into place, the directory synced, and only then
// referenced by a SnapshotRef record in the log. Recovery uses the snapshot
// the log references; a newer file the log does not reference (a crash
// before the record was synced) is removed. Old snapshot files and log
// segments wholly below the snapshot are removed afterwards, each removal
// followed by a directory sync, so a crash at any step leaves a data dir
// that recovers.
package storage

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/edgekv/edgekv/consensus/raftmsg"
	"github.com/edgekv/edgekv/storage/diskerr"
	"github.com/edgekv/edgekv/storage/snapfile"
	"github.com/edgekv/edgekv/storage/vfs"
	"github.com/edgekv/edgekv/storage/wal"
)

// Typed errors (see package diskerr). The runtime maps ErrNoSpace to 507.
var (
	ErrNoSpace      = diskerr.ErrNoSpace
	ErrIO           = diskerr.ErrIO
	ErrFailed       = diskerr.ErrFailed
	ErrCorrupt      = diskerr.ErrCorrupt
	ErrMetaMismatch = diskerr.ErrMetaMismatch
	ErrClosed       = diskerr.ErrClosed
)

// CorruptError names the damaged file and offset.
type CorruptError = diskerr.CorruptError

// Compression is a snapshot codec; see ParseCompression.
type Compression = snapfile.Codec

// Compression values.
const (
	CompressionNone   = snapfile.CodecNone
	CompressionSnappy = snapfile.CodecSnappy
	CompressionZstd   = snapfile.CodecZstd
)

// ParseCompression maps the --compression flag (none, snappy, zstd, auto)
// to a Compression; auto is zstd.
func ParseCompression(s string) (Compression, error) { return snapfile.ParseCompression(s) }

const (
	walDirName     = "wal"
	snapDirName    = "snap"
	snapSuffix     = ".snap"
	tmpSuffix      = ".tmp"
	defaultKeep    = 2
	defaultMaxSnap = 64 << 30
)

// Options configure Open. The zero value of each field picks its default.
type Options struct {
	// Identity is checked against the data dir's metadata file (and
	// recorded in it when the dir is new).
	Identity Identity
	// SegmentBytes is the WAL segment size (default 64 MiB).
	SegmentBytes int64
	// Compression is the snapshot codec (default zstd, as --compression=auto).
	Compression Compression
	// SnapshotKeep is how many snapshot files to keep (default 2, minimum 1).
	SnapshotKeep int
	// MaxSnapshotBytes bounds a snapshot received by InstallSnapshot
	// (default 64 GiB).
	MaxSnapshotBytes int64
	// MaxPendingBytes bounds the encoded bytes queued for the next sync
	// (default 64 MiB); Save blocks beyond it.
	MaxPendingBytes int
	Logger          *slog.Logger
	// FS is the file system (default vfs.Default(): the real one, or the
	// crash-simulating one under the crashtest build tag).
	FS vfs.FS
}

// Recovered is the durable state found by Open.
type Recovered struct {
	Meta DataDirMeta
	// Created is true when Open created the data dir's metadata just now.
	Created   bool
	HardState raftmsg.HardState
	// Snapshot is the newest snapshot, nil if none. The caller must Close it.
	Snapshot *Snapshot
	// Entries follow the snapshot's index (or start at 1) without a gap.
	Entries []raftmsg.Entry
}

// Snapshot is a verified snapshot file open for reading.
type Snapshot struct {
	Meta raftmsg.SnapshotMeta
	// Membership is the opaque membership-with-addresses blob given to
	// SaveSnapshot.
	Membership []byte
	// Payload yields the application payload (decompressed) exactly as
	// written; reading it fails with ErrCorrupt if the payload does not
	// decompress to the declared length.
	Payload io.Reader
	// RawBytes is the payload's size.
	RawBytes int64

	payload io.Closer
	file    vfs.File
}

// Close releases the snapshot's file.
func (s *Snapshot) Close() error {
	s.payload.Close()
	return s.file.Close()
}

// Storage is an open data dir. Save, SaveAsync and the snapshot methods are
// safe for concurrent use.
type Storage struct {
	fs      vfs.FS
	dir     string
	walDir  string
	snapDir string
	opts    Options
	logger  *slog.Logger
	log     *wal.Log

	snapMu sync.Mutex // serialises snapshot writes, installs and pruning; guards current
	// current is the newest durable, log-referenced snapshot.
	current raftmsg.SnapshotMeta
}

// Open opens (or creates) the data dir and recovers its durable state: the
// snapshot the log references (verified in full), then the log after it.
// A torn unsynced tail of the log is truncated with a log line; damage to
// synced data, a missing segment or snapshot, or a snapshot failing its
// checksum returns an error naming the file and offset (ErrCorrupt); a
// data dir of another node or cluster, or of a newer format, returns
// ErrMetaMismatch.
func Open(dir string, opts Options) (*Storage, *Recovered, error) {
	if opts.FS == nil {
		opts.FS = vfs.Default()
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.SnapshotKeep < 1 {
		opts.SnapshotKeep = defaultKeep
	}
	if opts.MaxSnapshotBytes <= 0 {
		opts.MaxSnapshotBytes = defaultMaxSnap
	}
	s := &Storage{
		fs:      opts.FS,
		dir:     dir,
		walDir:  filepath.Join(dir, walDirName),
		snapDir: filepath.Join(dir, snapDirName),
		opts:    opts,
		logger:  opts.Logger,
	}
	for _, d := range []string{dir, s.walDir, s.snapDir} {
		if err := s.fs.MkdirAll(d); err != nil {
			return nil, nil, fmt.Errorf("storage: create %s: %w", d, diskerr.Classify(err))
		}
	}
	// The new directories' entries must be durable before anything in
	// them is acknowledged.
	for _, d := range []string{filepath.Dir(filepath.Clean(dir)), dir} {
		if err := s.fs.SyncDir(d); err != nil {
			return nil, nil, fmt.Errorf("storage: sync %s: %w", d, diskerr.Classify(err))
		}
	}
	walNames, err := s.fs.List(s.walDir)
	if err != nil {
		return nil, nil, fmt.Errorf("storage: list %s: %w", s.walDir, err)
	}
	hasSegments := slices.ContainsFunc(walNames, func(n string) bool { return strings.HasSuffix(n, ".wal") })
	snaps, err := s.listSnapshots()
	if err != nil {
		return nil, nil, err
	}
	meta, created, err := loadOrCreateMeta(s.fs, dir, opts.Identity, hasSegments || len(snaps) > 0)
	if err != nil {
		return nil, nil, err
	}
	if !hasSegments && slices.ContainsFunc(snaps, func(sn snapName) bool { return !sn.tmp }) {
		// The log is created before any snapshot and never removed whole:
		// snapshots without it mean the log was lost.
		return nil, nil, diskerr.Corrupt(s.walDir, 0, "log missing but snapshot files present")
	}
	log, walRec, err := wal.Open(wal.Options{
		FS: s.fs, Dir: s.walDir, SegmentBytes: opts.SegmentBytes,
		MaxPendingBytes: opts.MaxPendingBytes, Logger: opts.Logger,
	})
	if err != nil {
		return nil, nil, err
	}
	s.log = log
	rec := &Recovered{Meta: meta, Created: created, HardState: walRec.HardState, Entries: walRec.Entries}
	if ref := walRec.Snapshot; ref.Index > 0 {
		snap, err := s.openSnapshotFile(ref.Index, ref.Term)
		if err != nil {
			log.Close()
			if errors.Is(err, fs.ErrNotExist) {
				err = diskerr.Corrupt(s.snapPath(ref.Index, ref.Term), 0, "snapshot referenced by the log is missing")
			}
			return nil, nil, err
		}
		rec.Snapshot = snap
		s.current = snap.Meta
	}
	if err := s.removeUnreferenced(snaps, walRec.Snapshot); err != nil {
		s.logger.Warn("storage: could not remove unreferenced snapshot files", "err", err)
	}
	s.logger.Info("storage: recovered", "dir", dir, "snapshot_index", s.current.Index,
		"entries", len(rec.Entries), "term", rec.HardState.Term, "commit", rec.HardState.Commit)
	return s, rec, nil
}

type snapName struct {
	index, term uint64
	tmp         bool
	name        string
}

func parseSnapName(name string) (snapName, bool) {
	tmp := false
	base := name
	if b, ok := strings.CutSuffix(base, tmpSuffix); ok {
		tmp, base = true, b
	}
	base, ok := strings.CutSuffix(base, snapSuffix)
	if !ok || len(base) != 33 || base[16] != '-' {
		return snapName{}, false
	}
	index, err1 := strconv.ParseUint(base[:16], 16, 64)
	term, err2 := strconv.ParseUint(base[17:], 16, 64)
	if err1 != nil || err2 != nil {
		return snapName{}, false
	}
	return snapName{index: index, term: term, tmp: tmp, name: name}, true
}

func (s *Storage) snapPath(index, term uint64) string {
	return filepath.Join(s.snapDir, fmt.Sprintf("%016x-%016x%s", index, term, snapSuffix))
}

// listSnapshots returns the snapshot files (and leftover temporary ones),
// newest first.
func (s *Storage) listSnapshots() ([]snapName, error) {
	names, err := s.fs.List(s.snapDir)
	if err != nil {
		return nil, fmt.Errorf("storage: list %s: %w", s.snapDir, err)
	}
	var out []snapName
	for _, n := range names {
		if sn, ok := parseSnapName(n); ok {
			out = append(out, sn)
		}
	}
	slices.SortFunc(out, func(a, b snapName) int {
		if a.index != b.index {
			return -cmpU64(a.index, b.index)
		}
		return -cmpU64(a.term, b.term)
	})
	return out, nil
}

func cmpU64(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// removeUnreferenced deletes temporary files and snapshot files newer than
// the one the log references: they were never made visible.
func (s *Storage) removeUnreferenced(snaps []snapName, ref wal.SnapshotRef) error {
	removed := false
	names, err := s.fs.List(s.snapDir)
	if err != nil {
		return err
	}
	for _, name := range names {
		if _, ok := parseSnapName(name); !ok && strings.HasSuffix(name, tmpSuffix) {
			// An interrupted InstallSnapshot.
			if err := s.fs.Remove(filepath.Join(s.snapDir, name)); err != nil {
				return err
			}
			removed = true
		}
	}
	for _, sn := range snaps {
		if sn.tmp || sn.index > ref.Index || (sn.index == ref.Index && sn.term != ref.Term) {
			if err := s.fs.Remove(filepath.Join(s.snapDir, sn.name)); err != nil {
				return err
			}
			s.logger.Info("storage: removed snapshot file the log never referenced", "file", sn.name)
			removed = true
		}
	}
	if removed {
		return s.fs.SyncDir(s.snapDir)
	}
	return nil
}

// openSnapshotFile opens and verifies a snapshot file.
func (s *Storage) openSnapshotFile(index, term uint64) (*Snapshot, error) {
	path := s.snapPath(index, term)
	f, err := s.fs.Open(path)
	if err != nil {
		return nil, fmt.Errorf("storage: open snapshot: %w", err)
	}
	snap, err := s.readSnapshot(f, path)
	if err != nil {
		f.Close()
		return nil, err
	}
	if snap.Meta.Index != index || snap.Meta.Term != term {
		snap.Close()
		return nil, diskerr.Corrupt(path, 0, "file holds snapshot %d/%d", snap.Meta.Index, snap.Meta.Term)
	}
	return snap, nil
}

func (s *Storage) readSnapshot(f vfs.File, path string) (*Snapshot, error) {
	size, err := f.Size()
	if err != nil {
		return nil, fmt.Errorf("storage: stat %s: %w", path, err)
	}
	info, err := snapfile.Verify(f, size, path)
	if err != nil {
		return nil, err
	}
	payload, err := info.Payload(f, path)
	if err != nil {
		return nil, err
	}
	return &Snapshot{Meta: info.Meta, Membership: info.Membership, Payload: payload, RawBytes: info.RawBytes, payload: payload, file: f}, nil
}

// Save appends ents and records hs (skipped when empty or unchanged), and
// returns once both are durable. Concurrent callers share one fdatasync.
// An entry at index i replaces i and every later entry (Raft truncation);
// ents must be contiguous, start at most one past the last entry and above
// the snapshot. Errors: ErrNoSpace / ErrIO (nothing written; the log stays
// usable), ErrFailed (sticky: reopen), ErrClosed.
func (s *Storage) Save(hs raftmsg.HardState, ents []raftmsg.Entry) error {
	return s.log.Save(hs, ents)
}

// SaveAsync is Save without waiting, for pipelining: the records are
// encoded before it returns (ents may be reused), and done is called from
// the storage's goroutine once they are durable or failed, in submission
// order. done must not block or call the storage. An error from SaveAsync
// itself means nothing was queued and done will not be called.
func (s *Storage) SaveAsync(hs raftmsg.HardState, ents []raftmsg.Entry, done func(error)) error {
	return s.log.Submit(hs, ents, done)
}

// LastIndex is the index of the last entry accepted (or of the snapshot).
func (s *Storage) LastIndex() uint64 { return s.log.LastIndex() }

// SnapshotMeta returns the newest durable snapshot's meta (zero if none).
func (s *Storage) SnapshotMeta() raftmsg.SnapshotMeta {
	s.snapMu.Lock()
	defer s.snapMu.Unlock()
	return s.current
}

// SaveSnapshot writes a snapshot of the state after applying meta.Index:
// membership is the opaque membership-with-addresses blob, writePayload
// writes the application state (it should read an immutable view, so that
// applying continues meanwhile). The file is compressed, checksummed,
// synced, renamed into place, the directory synced and the log told; then
// snapshots beyond SnapshotKeep and log segments wholly below meta.Index
// are removed. meta.Index must be above the current snapshot's and at most
// the last entry written.
func (s *Storage) SaveSnapshot(meta raftmsg.SnapshotMeta, membership []byte, writePayload func(io.Writer) error) error {
	s.snapMu.Lock()
	defer s.snapMu.Unlock()
	if meta.Index <= s.current.Index {
		return fmt.Errorf("storage: snapshot at %d is not newer than the one at %d", meta.Index, s.current.Index)
	}
	if last := s.log.LastIndex(); meta.Index > last {
		return fmt.Errorf("storage: snapshot at %d is beyond the last entry %d", meta.Index, last)
	}
	final := s.snapPath(meta.Index, meta.Term)
	tmp := final + tmpSuffix
	f, err := s.fs.Create(tmp)
	if err != nil {
		return fmt.Errorf("storage: create %s: %w", tmp, diskerr.Classify(err))
	}
	_, err = snapfile.Write(vfs.NewWriter(f, 0), meta, membership, s.opts.Compression, writePayload)
	if err == nil {
		if serr := f.Sync(); serr != nil {
			err = fmt.Errorf("sync: %w", serr)
		}
	}
	if cerr := f.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		s.removeQuietly(tmp)
		return fmt.Errorf("storage: write snapshot %s: %w", tmp, diskerr.Classify(err))
	}
	if err := s.publish(tmp, final, wal.SnapshotRef{Index: meta.Index, Term: meta.Term}); err != nil {
		return err
	}
	s.current = meta
	s.logger.Info("storage: snapshot saved", "index", meta.Index, "term", meta.Term, "file", filepath.Base(final))
	s.cleanup()
	return nil
}

// publish renames a complete, synced temporary file into place, syncs the
// directory and records the reference in the log. Must hold snapMu.
func (s *Storage) publish(tmp, final string, ref wal.SnapshotRef) error {
	if err := s.fs.Rename(tmp, final); err != nil {
		s.removeQuietly(tmp)
		return fmt.Errorf("storage: rename snapshot: %w", diskerr.Classify(err))
	}
	if err := s.fs.SyncDir(s.snapDir); err != nil {
		return fmt.Errorf("storage: sync %s: %w: %w", s.snapDir, diskerr.ErrFailed, diskerr.Classify(err))
	}
	if err := s.log.SaveSnapshotRef(ref); err != nil {
		return fmt.Errorf("storage: record snapshot in the log: %w", err)
	}
	return nil
}

func (s *Storage) removeQuietly(path string) {
	if err := s.fs.Remove(path); err == nil {
		_ = s.fs.SyncDir(filepath.Dir(path))
	}
}

// cleanup removes snapshot files beyond SnapshotKeep (never the current
// one) and log segments below the current snapshot. Failures are logged:
// they cost disk space, not correctness. Must hold snapMu.
func (s *Storage) cleanup() {
	snaps, err := s.listSnapshots()
	if err != nil {
		s.logger.Warn("storage: list snapshots", "err", err)
		return
	}
	kept := 0
	for _, sn := range snaps {
		if sn.tmp || sn.index > s.current.Index {
			continue
		}
		kept++
		if kept <= s.opts.SnapshotKeep || sn.index == s.current.Index {
			continue
		}
		if err := s.fs.Remove(filepath.Join(s.snapDir, sn.name)); err != nil {
			s.logger.Warn("storage: remove old snapshot", "file", sn.name, "err", err)
			continue
		}
		if err := s.fs.SyncDir(s.snapDir); err != nil {
			s.logger.Warn("storage: sync snapshot dir", "err", err)
		}
	}
	if n, err := s.log.Compact(); err != nil {
		s.logger.Warn("storage: remove log segments below the snapshot", "removed", n, "err", err)
	}
}

// InstallSnapshot stores a snapshot file received from the leader (the raw
// bytes of the leader's SnapshotFile) by the same steps as SaveSnapshot:
// it is written to a temporary file, verified in full (checksums,
// decompression), synced and renamed into place before the log records it;
// the log before it is dropped (paper §7: the snapshot replaces the log).
// A stream that fails verification returns ErrCorrupt and changes nothing.
// It returns the verified meta; OpenSnapshot reads the payload.
func (s *Storage) InstallSnapshot(r io.Reader) (raftmsg.SnapshotMeta, error) {
	s.snapMu.Lock()
	defer s.snapMu.Unlock()
	tmp := filepath.Join(s.snapDir, "incoming"+snapSuffix+tmpSuffix)
	f, err := s.fs.Create(tmp)
	if err != nil {
		return raftmsg.SnapshotMeta{}, fmt.Errorf("storage: create %s: %w", tmp, diskerr.Classify(err))
	}
	fail := func(err error) (raftmsg.SnapshotMeta, error) {
		f.Close()
		s.removeQuietly(tmp)
		return raftmsg.SnapshotMeta{}, err
	}
	n, err := io.Copy(vfs.NewWriter(f, 0), io.LimitReader(r, s.opts.MaxSnapshotBytes+1))
	if err != nil {
		return fail(fmt.Errorf("storage: receive snapshot: %w", diskerr.Classify(err)))
	}
	if n > s.opts.MaxSnapshotBytes {
		return fail(fmt.Errorf("storage: received snapshot exceeds %d bytes", s.opts.MaxSnapshotBytes))
	}
	if err := f.Sync(); err != nil {
		return fail(fmt.Errorf("storage: sync received snapshot: %w", diskerr.Classify(err)))
	}
	snap, err := s.readSnapshot(f, tmp)
	if err != nil {
		return fail(fmt.Errorf("storage: received snapshot: %w", err))
	}
	// Decompress it all once: a payload that does not decompress exactly
	// is refused here, not discovered by the state machine.
	if _, err := io.Copy(io.Discard, snap.Payload); err != nil {
		snap.payload.Close()
		return fail(fmt.Errorf("storage: received snapshot: %w", err))
	}
	snap.payload.Close()
	meta := snap.Meta
	if meta.Index <= s.current.Index {
		return fail(fmt.Errorf("storage: received snapshot at %d is not newer than the one at %d", meta.Index, s.current.Index))
	}
	if err := f.Close(); err != nil {
		s.removeQuietly(tmp)
		return raftmsg.SnapshotMeta{}, err
	}
	final := s.snapPath(meta.Index, meta.Term)
	if err := s.publish(tmp, final, wal.SnapshotRef{Index: meta.Index, Term: meta.Term, Reset: true}); err != nil {
		return raftmsg.SnapshotMeta{}, err
	}
	s.current = meta
	s.logger.Info("storage: snapshot installed", "index", meta.Index, "term", meta.Term)
	s.cleanup()
	return meta, nil
}

// OpenSnapshot opens the newest snapshot for reading (nil, nil if none).
func (s *Storage) OpenSnapshot() (*Snapshot, error) {
	s.snapMu.Lock()
	cur := s.current
	s.snapMu.Unlock()
	if cur.Index == 0 {
		return nil, nil
	}
	return s.openSnapshotFile(cur.Index, cur.Term)
}

// SnapshotFile opens the newest snapshot file's raw bytes, to stream to a
// follower (which passes them to its InstallSnapshot). It returns the
// reader, the file's size and the snapshot's meta; (nil, 0, zero, nil) if
// there is no snapshot. The file stays readable even if a newer snapshot
// replaces it meanwhile.
func (s *Storage) SnapshotFile() (io.ReadCloser, int64, raftmsg.SnapshotMeta, error) {
	s.snapMu.Lock()
	cur := s.current
	s.snapMu.Unlock()
	if cur.Index == 0 {
		return nil, 0, cur, nil
	}
	f, err := s.fs.Open(s.snapPath(cur.Index, cur.Term))
	if err != nil {
		return nil, 0, cur, fmt.Errorf("storage: open snapshot: %w", err)
	}
	size, err := f.Size()
	if err != nil {
		f.Close()
		return nil, 0, cur, err
	}
	return &fileReader{Reader: io.NewSectionReader(f, 0, size), f: f}, size, cur, nil
}

type fileReader struct {
	io.Reader
	f vfs.File
}

func (r *fileReader) Close() error { return r.f.Close() }

// Err returns the sticky failure (ErrFailed), if any.
func (s *Storage) Err() error { return s.log.Err() }

// Close waits for queued saves to be durable and closes the storage.
func (s *Storage) Close() error { return s.log.Close() }
