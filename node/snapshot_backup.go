package node

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"

	"github.com/edgekv/edgekv/config"
	"github.com/edgekv/edgekv/consensus/raftmsg"
	"github.com/edgekv/edgekv/kv"
	"github.com/edgekv/edgekv/storage"
	"github.com/edgekv/edgekv/storage/snapfile"
)

// Backups (GET /v1/snapshot, edgekv restore).
//
// A backup is a snapshot file in storage's format (package
// storage/snapfile), zstd-compressed, so that one decoder checks both and
// a snapshot file copied out of a data dir's snap/ directory is a valid
// backup too:
//
//	+--------------------------------------------------------------+
//	| header: magic "edgekvSN", version, codec (2 = zstd), index =  |
//	|         the applied index of the view, term, header CRC-32C   |
//	| meta:   the configuration's voter and learner ids, the        |
//	|         membership blob (snapblob.go) of the source cluster   |
//	| payload: the kv snapshot of one immutable view (package kv    |
//	|          doc: magic "EKVSNAP", version, counts, header and    |
//	|          body CRC-32C), zstd-compressed                       |
//	| trailer: stored and raw payload lengths, CRC-32C of every     |
//	|          byte before it, magic "edgekvSE"                     |
//	+--------------------------------------------------------------+
//
// The view is immutable, so the backup is consistent (one applied index)
// while writes go on. ReadBackup refuses anything else with an error that
// says what is wrong: not a snapshot file (magic), a newer format, a file
// cut short (no trailer), a checksum mismatch, a payload that does not
// decompress to its declared length, or a kv snapshot that fails its own
// checks or is not the state at the header's index.

// backupCodec is the payload compression of backups.
const backupCodec = snapfile.CodecZstd

// writeBackup writes the backup of view to w.
func writeBackup(w io.Writer, view *kv.View, term uint64, conf raftmsg.ConfState, membership []byte) (int64, error) {
	meta := raftmsg.SnapshotMeta{Index: view.AppliedIndex(), Term: term, Conf: conf}
	n, err := snapfile.Write(w, meta, membership, backupCodec, view.WriteSnapshot)
	if err != nil {
		return n, fmt.Errorf("node: write backup: %w", err)
	}
	return n, nil
}

// Backup is a verified backup, loaded into a state machine.
type Backup struct {
	// Meta is the source's snapshot meta: Index is the applied index of
	// the state, Conf the source cluster's configuration.
	Meta raftmsg.SnapshotMeta
	// Members is the source cluster's member table (may be empty).
	Members []snapshotMember
	// Machine holds the restored state.
	Machine *kv.Machine
}

// ErrBadBackup wraps every ReadBackup error caused by the file's content.
var ErrBadBackup = errors.New("not a valid edgekv backup")

// ReadBackup verifies a backup of size bytes and loads it into a new
// state machine configured by kvCfg. Errors caused by the content wrap
// ErrBadBackup; I/O errors are returned as they are.
func ReadBackup(r io.ReaderAt, size int64, kvCfg kv.Config) (*Backup, error) {
	info, err := snapfile.Verify(r, size, "backup")
	if err != nil {
		return nil, badBackup(err)
	}
	members, err := decodeMembershipBlob(info.Membership)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadBackup, err)
	}
	payload, err := info.Payload(r, "backup")
	if err != nil {
		return nil, badBackup(err)
	}
	defer payload.Close()
	m, err := kv.NewMachine(kvCfg)
	if err != nil {
		return nil, err
	}
	if err := m.Restore(payload); err != nil {
		return nil, badBackup(err)
	}
	// Restore may stop before the end of a payload that decoded fine: the
	// whole payload must be the one kv snapshot.
	if n, err := payload.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		if err != nil && err != io.EOF {
			return nil, badBackup(err)
		}
		return nil, fmt.Errorf("%w: bytes after the end of the store's snapshot", ErrBadBackup)
	}
	if got := m.View().AppliedIndex(); got != info.Meta.Index {
		return nil, fmt.Errorf("%w: the header says index %d, the state is at %d", ErrBadBackup, info.Meta.Index, got)
	}
	return &Backup{Meta: info.Meta, Members: members, Machine: m}, nil
}

// badBackup wraps content errors (corrupt file, newer format, corrupt kv
// snapshot) in ErrBadBackup and passes I/O errors on.
func badBackup(err error) error {
	if errors.Is(err, storage.ErrCorrupt) || errors.Is(err, storage.ErrMetaMismatch) || errors.Is(err, kv.ErrCorruptSnapshot) {
		return fmt.Errorf("%w: %w", ErrBadBackup, err)
	}
	return err
}

// RestoreOptions configure Restore.
type RestoreOptions struct {
	// From is the backup file.
	From string
	// Node is the new member's configuration: its DataDir (which must not
	// exist or be empty), Name, AdvertisePeer (from --initial-cluster when
	// it lists the name), cluster token and the kv limits.
	Node config.Config
}

// RestoreResult describes the data dir Restore built.
type RestoreResult struct {
	MemberID raftmsg.NodeID
	Index    uint64
	Keys     int
	Revision uint64
}

// Restore builds the data dir of the first member of a new cluster that
// holds the backup's data: a new random member id, the cluster id of
// opts.Node's token, the backup's state as the data dir's snapshot at the
// backup's index (term 1), and a configuration of this member alone.
// Started with the same --name and --data-dir, the member leads at once;
// others join it. It refuses a data dir that exists and is not empty.
func Restore(opts RestoreOptions, log *slog.Logger) (RestoreResult, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg := opts.Node
	if err := requireEmptyDir(cfg.DataDir); err != nil {
		return RestoreResult{}, err
	}
	f, err := os.Open(opts.From)
	if err != nil {
		return RestoreResult{}, fmt.Errorf("backup: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return RestoreResult{}, fmt.Errorf("backup: %w", err)
	}
	if !st.Mode().IsRegular() {
		return RestoreResult{}, fmt.Errorf("backup %s is not a regular file", opts.From)
	}
	b, err := ReadBackup(f, st.Size(), kvConfig(cfg))
	if err != nil {
		return RestoreResult{}, fmt.Errorf("backup %s: %w", opts.From, err)
	}
	view := b.Machine.View()
	if view.AppliedIndex() == 0 {
		return RestoreResult{}, fmt.Errorf("backup %s: %w: it holds no applied state (index 0)", opts.From, ErrBadBackup)
	}
	store, rec, err := storage.Open(cfg.DataDir, storage.Options{
		Identity: storage.Identity{ClusterID: cfg.ClusterID(), NodeName: cfg.Name},
		Logger:   log,
	})
	if err != nil {
		return RestoreResult{}, fmt.Errorf("data dir %s: %w", cfg.DataDir, err)
	}
	self := MemberRecord{Name: cfg.Name, ID: rec.Meta.MemberID, Peer: cfg.AdvertisePeer}
	// Term 1: the new cluster's history starts here; its first leader
	// campaigns in term 2.
	meta := raftmsg.SnapshotMeta{Index: view.AppliedIndex(), Term: 1, Conf: raftmsg.ConfState{Voters: []raftmsg.NodeID{self.ID}}}
	err = writeSingleVoterSnapshot(store, meta, []MemberRecord{self}, view, raftmsg.HardState{Term: 1, Commit: meta.Index})
	if cerr := store.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err == nil {
		err = writeState(cfg.DataDir, stateFile{Members: []MemberRecord{self}})
	}
	if err != nil {
		return RestoreResult{}, fmt.Errorf("data dir %s: %w", cfg.DataDir, err)
	}
	log.Info("node: restored a backup into a new data dir", "dir", cfg.DataDir, "name", cfg.Name,
		"member_id", fmt.Sprintf("%016x", uint64(self.ID)), "index", meta.Index, "keys", view.Len(), "revision", view.Revision())
	return RestoreResult{MemberID: self.ID, Index: meta.Index, Keys: view.Len(), Revision: view.Revision()}, nil
}

// writeSingleVoterSnapshot installs view as the store's snapshot at meta
// (the log is reset: nothing before it remains) and records hs.
func writeSingleVoterSnapshot(store *storage.Storage, meta raftmsg.SnapshotMeta, members []MemberRecord, view *kv.View, hs raftmsg.HardState) error {
	if view.AppliedIndex() != meta.Index {
		panic(fmt.Sprintf("node: snapshot meta %d for a view at %d", meta.Index, view.AppliedIndex())) // our bug
	}
	blob, err := encodeMembershipBlob(snapshotMembersOf(members))
	if err != nil {
		return err
	}
	// storage installs snapshot files (the bytes a leader sends): stream
	// one into it through a pipe; the writer goroutine ends before return.
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		_, err := snapfile.Write(pw, meta, blob, snapfile.CodecZstd, view.WriteSnapshot)
		pw.CloseWithError(err)
		done <- err
	}()
	installed, err := store.InstallSnapshot(pr)
	pr.CloseWithError(errors.New("node: install ended"))
	if werr := <-done; err == nil && werr != nil {
		err = werr
	}
	if err != nil {
		return fmt.Errorf("write snapshot: %w", err)
	}
	if installed.Index != meta.Index {
		return fmt.Errorf("installed snapshot at %d, want %d", installed.Index, meta.Index)
	}
	if err := store.Save(hs, nil); err != nil {
		return fmt.Errorf("record hard state: %w", err)
	}
	return nil
}

// requireEmptyDir refuses a path that exists and is not an empty directory.
func requireEmptyDir(dir string) error {
	entries, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("data dir %s: %w", dir, err)
	case len(entries) > 0:
		return fmt.Errorf("data dir %s exists and is not empty: restore builds a new data dir; choose another path", dir)
	}
	return nil
}

// kvConfig is the state machine's configuration from the flags.
func kvConfig(cfg config.Config) kv.Config {
	return kv.Config{
		QuotaBytes: uint64(cfg.QuotaBytes), IdempotencyTTL: cfg.IdempotencyTTL, IdempotencyMaxKeys: cfg.IdempotencyMaxKeys,
		Limits: kv.Limits{MaxValueBytes: int(cfg.MaxValueBytes), MaxBatchOps: cfg.MaxTxnOps},
	}
}

// ForceNewCluster turns the data dir of cfg into the data dir of a new
// cluster whose only voter is this member (disaster recovery: a quorum is
// lost for good). Every entry the log holds is kept and counts as
// committed: the committed ones, and the later ones this member had
// appended without learning that they committed (they may have been
// acknowledged to clients; a client that got 504 or no answer may see its
// write applied). Configuration changes in the log are not applied to the
// membership: the new configuration is this member alone. The state after
// the last entry (plus a no-op) becomes a snapshot and the log is reset
// after it, so a restart without the flag recovers the same cluster.
// The member id, name and cluster id stay. It returns the snapshot index.
func ForceNewCluster(cfg config.Config, log *slog.Logger) (uint64, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	store, rec, err := storage.Open(cfg.DataDir, storage.Options{
		Identity:     storage.Identity{ClusterID: cfg.ClusterID(), NodeName: cfg.Name},
		SnapshotKeep: cfg.SnapshotKeep,
		Logger:       log,
	})
	if err != nil {
		if rec != nil && rec.Snapshot != nil {
			rec.Snapshot.Close()
		}
		return 0, fmt.Errorf("data dir %s: %w", cfg.DataDir, err)
	}
	closed := false
	defer func() {
		if !closed {
			store.Close()
		}
	}()
	self := rec.Meta.MemberID
	if rec.Created || (rec.Snapshot == nil && len(rec.Entries) == 0 && rec.HardState.IsEmpty()) {
		if rec.Snapshot != nil {
			rec.Snapshot.Close()
		}
		return 0, fmt.Errorf("--force-new-cluster: data dir %s holds no data to recover", cfg.DataDir)
	}
	if _, _, err := readState(cfg, self); err != nil {
		if rec.Snapshot != nil {
			rec.Snapshot.Close()
		}
		return 0, fmt.Errorf("data dir %s: %w", cfg.DataDir, err)
	}
	m, err := kv.NewMachine(kvConfig(cfg))
	if err != nil {
		return 0, err
	}
	var snap raftmsg.SnapshotMeta
	if rec.Snapshot != nil {
		snap = rec.Snapshot.Meta
		err := restoreRecovered(m, Recovered{Snapshot: snap, SnapshotPayload: rec.Snapshot.Payload})
		rec.Snapshot.Close()
		if err != nil {
			return 0, err
		}
	}
	hs := rec.HardState
	last, lastTerm := snap.Index, snap.Term
	if n := len(rec.Entries); n > 0 {
		last, lastTerm = rec.Entries[n-1].Index, rec.Entries[n-1].Term
	}
	term := max(hs.Term, lastTerm, 1)
	// A no-op after the last entry gives the new snapshot an index of its
	// own, newer than any snapshot the data dir has.
	noop := raftmsg.Entry{Index: last + 1, Term: term, Type: raftmsg.EntryNoop}
	if err := store.Save(raftmsg.HardState{Term: term, Vote: hs.Vote, Commit: hs.Commit}, []raftmsg.Entry{noop}); err != nil {
		return 0, fmt.Errorf("--force-new-cluster: append a no-op: %w", err)
	}
	ents := append(slices.Clip(rec.Entries), noop)
	if _, err := m.ApplyEntries(ents, nil); err != nil {
		return 0, fmt.Errorf("--force-new-cluster: replay the log: %w", err)
	}
	view := m.View()
	selfRec := MemberRecord{Name: cfg.Name, ID: self, Peer: cfg.AdvertisePeer}
	blob, err := encodeMembershipBlob(snapshotMembersOf([]MemberRecord{selfRec}))
	if err != nil {
		return 0, err
	}
	meta := raftmsg.SnapshotMeta{Index: noop.Index, Term: term, Conf: raftmsg.ConfState{Voters: []raftmsg.NodeID{self}}}
	if err := store.SaveSnapshot(meta, blob, view.WriteSnapshot); err != nil {
		return 0, fmt.Errorf("--force-new-cluster: write the snapshot: %w", err)
	}
	if err := store.Save(raftmsg.HardState{Term: term, Vote: hs.Vote, Commit: meta.Index}, nil); err != nil {
		return 0, fmt.Errorf("--force-new-cluster: record the commit index: %w", err)
	}
	closed = true
	if err := store.Close(); err != nil {
		return 0, fmt.Errorf("--force-new-cluster: %w", err)
	}
	st, _, err := readState(cfg, self)
	if err != nil {
		return 0, err
	}
	st.Members = []MemberRecord{selfRec}
	if err := writeState(cfg.DataDir, st); err != nil {
		return 0, fmt.Errorf("data dir %s: %w", cfg.DataDir, err)
	}
	log.Warn("node: --force-new-cluster: this member is now the only voter of a new cluster; every entry of its log was kept and is committed",
		"index", meta.Index, "term", term, "old_commit", hs.Commit, "entries_after_old_commit", last-min(last, max(hs.Commit, snap.Index)),
		"keys", view.Len(), "revision", view.Revision())
	return meta.Index, nil
}

// backupFileName is the file name a backup download suggests.
func backupFileName(name string, index uint64) string {
	return filepath.Base(fmt.Sprintf("edgekv-%s-%d.snap", name, index))
}
