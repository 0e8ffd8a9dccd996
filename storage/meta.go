package storage

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"

	"github.com/edgekv/edgekv/consensus/raftmsg"
	"github.com/edgekv/edgekv/storage/diskerr"
	"github.com/edgekv/edgekv/storage/vfs"
)

// MetaFormatVersion is the data-dir layout version this code writes and
// the newest it reads.
const MetaFormatVersion = 1

const (
	metaFileName = "edgekv-meta.json"
	maxMetaBytes = 64 << 10
)

// DataDirMeta identifies a data dir (SPEC §1): written once when the dir is
// created, checked at every start.
type DataDirMeta struct {
	FormatVersion int            `json:"format_version"`
	ClusterID     uint64         `json:"cluster_id"`
	NodeName      string         `json:"node_name"`
	MemberID      raftmsg.NodeID `json:"member_id"`
}

// Identity is who the caller expects the data dir to belong to.
type Identity struct {
	ClusterID uint64
	NodeName  string
	// MemberID, when non-zero, is used for a new data dir and must match
	// an existing one; zero means "pick a random one for a new dir, accept
	// the recorded one otherwise".
	MemberID raftmsg.NodeID
}

// loadOrCreateMeta reads the metadata file of dir and checks it against
// want, or creates it when the dir holds no data yet (hasData false).
func loadOrCreateMeta(fsys vfs.FS, dir string, want Identity, hasData bool) (DataDirMeta, bool, error) {
	path := filepath.Join(dir, metaFileName)
	buf, err := vfs.ReadFile(fsys, path, maxMetaBytes)
	if errors.Is(err, fs.ErrNotExist) {
		if hasData {
			return DataDirMeta{}, false, diskerr.Corrupt(path, 0, "metadata file missing from a data dir that holds a log or snapshots")
		}
		return createMeta(fsys, path, want)
	}
	if err != nil {
		return DataDirMeta{}, false, fmt.Errorf("storage: read %s: %w", path, err)
	}
	var m DataDirMeta
	if err := json.Unmarshal(buf, &m); err != nil {
		return DataDirMeta{}, false, diskerr.Corrupt(path, 0, "unreadable metadata: %v", err)
	}
	if m.FormatVersion > MetaFormatVersion {
		return DataDirMeta{}, false, fmt.Errorf("%w: %s was written by a newer edgekv (format version %d, this binary supports up to %d)",
			diskerr.ErrMetaMismatch, path, m.FormatVersion, MetaFormatVersion)
	}
	if m.FormatVersion < 1 || m.MemberID == 0 || m.NodeName == "" {
		return DataDirMeta{}, false, diskerr.Corrupt(path, 0, "metadata incomplete: %+v", m)
	}
	if m.NodeName != want.NodeName {
		return DataDirMeta{}, false, fmt.Errorf("%w: data dir %s belongs to node %q, not %q", diskerr.ErrMetaMismatch, dir, m.NodeName, want.NodeName)
	}
	if m.ClusterID != want.ClusterID {
		return DataDirMeta{}, false, fmt.Errorf("%w: data dir %s belongs to cluster %016x, not %016x (check --initial-cluster-token)",
			diskerr.ErrMetaMismatch, dir, m.ClusterID, want.ClusterID)
	}
	if want.MemberID != 0 && m.MemberID != want.MemberID {
		return DataDirMeta{}, false, fmt.Errorf("%w: data dir %s has member id %016x, not %016x", diskerr.ErrMetaMismatch, dir, m.MemberID, want.MemberID)
	}
	return m, false, nil
}

func createMeta(fsys vfs.FS, path string, want Identity) (DataDirMeta, bool, error) {
	if want.NodeName == "" {
		return DataDirMeta{}, false, errors.New("storage: a new data dir needs a node name")
	}
	id := want.MemberID
	for id == 0 {
		var b [8]byte
		if _, err := rand.Read(b[:]); err != nil {
			return DataDirMeta{}, false, fmt.Errorf("storage: member id: %w", err)
		}
		id = raftmsg.NodeID(binary.LittleEndian.Uint64(b[:]))
	}
	m := DataDirMeta{FormatVersion: MetaFormatVersion, ClusterID: want.ClusterID, NodeName: want.NodeName, MemberID: id}
	buf, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return DataDirMeta{}, false, err
	}
	if err := vfs.WriteFileAtomic(fsys, path, append(buf, '\n')); err != nil {
		return DataDirMeta{}, false, fmt.Errorf("storage: write %s: %w", path, diskerr.Classify(err))
	}
	return m, true, nil
}
