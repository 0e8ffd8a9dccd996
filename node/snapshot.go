package node

import (
	"context"
	"fmt"
	"io"
	"log/slog"

	"github.com/edgekv/edgekv/config"
	"github.com/edgekv/edgekv/consensus/raftmsg"
	"github.com/edgekv/edgekv/httpapi"
	"github.com/edgekv/edgekv/kv"
	"github.com/edgekv/edgekv/storage"
)

// restoreRecovered loads the recovered snapshot, if any, into a new
// machine: the member then applies only the entries after it.
func restoreRecovered(m *kv.Machine, rec Recovered) error {
	if rec.Snapshot.IsEmpty() {
		return nil
	}
	if rec.SnapshotPayload == nil {
		return fmt.Errorf("node: recovered snapshot %d/%d without its payload", rec.Snapshot.Index, rec.Snapshot.Term)
	}
	if err := m.Restore(rec.SnapshotPayload); err != nil {
		return fmt.Errorf("node: restore snapshot %d/%d: %w", rec.Snapshot.Index, rec.Snapshot.Term, err)
	}
	if got := m.View().AppliedIndex(); got != rec.Snapshot.Index {
		return fmt.Errorf("node: snapshot %d/%d holds the state at index %d", rec.Snapshot.Index, rec.Snapshot.Term, got)
	}
	return nil
}

// recoveredOf maps what storage recovered to the member's Recovered; the
// returned function closes the snapshot file once New has read it.
func recoveredOf(rec *storage.Recovered) (Recovered, func()) {
	out := Recovered{HardState: rec.HardState, Entries: rec.Entries}
	if rec.Snapshot == nil {
		return out, func() {}
	}
	out.Snapshot, out.SnapshotPayload = rec.Snapshot.Meta, rec.Snapshot.Payload
	return out, func() { rec.Snapshot.Close() }
}

// forceNewClusterAtStart runs ForceNewCluster with the loud warnings an
// operator must not miss.
func forceNewClusterAtStart(cfg config.Config, log *slog.Logger) error {
	log.Warn("node: ======== --force-new-cluster ========")
	log.Warn("node: --force-new-cluster: starting a NEW cluster whose only voter is this member, from the data in " + cfg.DataDir +
		"; every other member is forgotten and must rejoin with a wiped data dir. Remove the flag once this start succeeds.")
	index, err := ForceNewCluster(cfg, log)
	if err != nil {
		return err
	}
	log.Warn("node: --force-new-cluster: done; this member is the single voter", "snapshot_index", index)
	return nil
}

// membershipBlobFunc returns the blob of a fixed member list.
func membershipBlobFunc(members []MemberRecord) func() ([]byte, error) {
	recs := snapshotMembersOf(members)
	return func() ([]byte, error) { return encodeMembershipBlob(recs) }
}

// maxConcurrentBackups bounds GET /v1/snapshot streams at once: each holds
// an old view alive and keeps a core busy compressing.
const maxConcurrentBackups = 2

// BackupSource returns the member's source of GET /v1/snapshot; name is
// used in the suggested file name.
func (n *Node) BackupSource(name string) httpapi.BackupSource { return backupSource{n: n, name: name} }

type backupSource struct {
	n    *Node
	name string
}

func (b backupSource) Backup(_ context.Context, c httpapi.Consistency) (httpapi.BackupStream, error) {
	n := b.n
	if n.backups.Add(1) > maxConcurrentBackups {
		n.backups.Add(-1)
		return httpapi.BackupStream{}, unavailable(fmt.Sprintf("%d backups are being streamed already", maxConcurrentBackups))
	}
	view, err := n.readView(c)
	if err != nil {
		n.backups.Add(-1)
		return httpapi.BackupStream{}, err
	}
	var blob []byte
	if n.cfg.MembershipBlob != nil {
		if blob, err = n.cfg.MembershipBlob(); err != nil {
			n.backups.Add(-1)
			return httpapi.BackupStream{}, fmt.Errorf("node: backup membership: %w", err)
		}
	}
	tab := n.mem.table.Load()
	conf := raftmsg.ConfState{Voters: tab.voters()}
	for _, r := range tab.members {
		if r.Learner {
			conf.Learners = append(conf.Learners, r.ID)
		}
	}
	term := n.term.Load()
	return httpapi.BackupStream{
		Meta: n.meta(view.Revision()), Index: view.AppliedIndex(),
		FileName: backupFileName(b.name, view.AppliedIndex()),
		WriteTo: func(w io.Writer) error {
			_, err := writeBackup(w, view, term, conf, blob)
			return err
		},
		Release: func() { n.backups.Add(-1) },
	}, nil
}
