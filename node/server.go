package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edgekv/edgekv/batch"
	"github.com/edgekv/edgekv/config"
	"github.com/edgekv/edgekv/consensus"
	"github.com/edgekv/edgekv/consensus/raftmsg"
	"github.com/edgekv/edgekv/ebpf"
	"github.com/edgekv/edgekv/httpapi"
	"github.com/edgekv/edgekv/kv"
	"github.com/edgekv/edgekv/ops"
	"github.com/edgekv/edgekv/storage"
	"github.com/edgekv/edgekv/storage/vfs"
	"github.com/edgekv/edgekv/wire"
)

// Server is a running edgekv process: the data dir, the member, the peer
// transport and the HTTP API, assembled from a config.Config.
type Server struct {
	log       *slog.Logger
	store     *storage.Storage
	node      *Node
	transport *wire.Transport
	api       *httpapi.API
	clientLn  *clientListener
	serveErr  chan error
	done      chan struct{}
	errMu     sync.Mutex
	// serveFailure is the HTTP server's error if it stopped by itself.
	serveFailure    error
	closeOnce       sync.Once
	closeErr        error
	metrics         *ops.Metrics
	name            string
	advertiseClient string
	// cfg and stateMu/state: the runtime's state file, rewritten when the
	// member table changes (applier) or the member is removed.
	cfg     config.Config
	stateMu sync.Mutex
	state   stateFile
	// draining: a graceful stop is under way (shutdown.go).
	draining atomic.Bool
	inflight atomic.Int64 // requests being served (drainMiddleware)
	// tracer is the --trace ebpf tracer (nil: untraced).
	tracer *ebpf.Tracer
	// ClientAddr and PeerAddr are the addresses actually listened on.
	ClientAddr, PeerAddr string
}

// stateFileName holds what the runtime itself keeps in the data dir: the
// boot counter and the member table (members.go) as last applied.
const stateFileName = "edgekv-node.json"

const maxStateFileBytes = 1 << 20

// stateFile is the runtime's record in the data dir, rewritten atomically
// at every start before anything else happens.
type stateFile struct {
	// BootEpoch counts starts (mod 2^16); request ids carry it.
	BootEpoch uint16         `json:"boot_epoch"`
	Members   []MemberRecord `json:"members"`
	// Applied is the log index the member table reflects.
	Applied uint64 `json:"applied,omitempty"`
	// Removed: this member was removed from the cluster; it must not
	// start again (wipe the data dir and join as a new member).
	Removed bool `json:"removed,omitempty"`
}

// Start opens the data dir, starts the member and listens on the peer and
// client addresses. A new member of a cluster of several first learns the
// other members' ids (discover.go), waiting for them until ctx ends. Every
// failure is one error that names the problem; nothing is left running.
func Start(ctx context.Context, cfg config.Config, log *slog.Logger) (_ *Server, err error) {
	s := &Server{log: log, cfg: cfg, serveErr: make(chan error, 1), done: make(chan struct{})}
	defer func() {
		if err != nil {
			s.shutdown()
		}
	}()
	compression, err := storage.ParseCompression(cfg.Compression)
	if err != nil {
		return nil, err
	}
	if cfg.ForceNewCluster {
		if err := forceNewClusterAtStart(cfg, log); err != nil {
			return nil, err
		}
	}
	store, rec, err := storage.Open(cfg.DataDir, storage.Options{
		Identity:     storage.Identity{ClusterID: cfg.ClusterID(), NodeName: cfg.Name},
		Compression:  compression,
		SnapshotKeep: cfg.SnapshotKeep,
		Logger:       log,
	})
	if err != nil {
		return nil, fmt.Errorf("data dir %s: %w", cfg.DataDir, err)
	}
	s.store = store
	recovered, closeSnapshot := recoveredOf(rec)
	defer closeSnapshot()
	disk, err := NewDiskStore(store, cfg.DataDir)
	if err != nil {
		return nil, fmt.Errorf("data dir %s: %w", cfg.DataDir, err)
	}
	self := rec.Meta.MemberID
	state, found, err := readState(cfg, self)
	if err != nil {
		return nil, fmt.Errorf("data dir %s: %w", cfg.DataDir, err)
	}
	if !found && (!rec.HardState.IsEmpty() || len(rec.Entries) > 0 || rec.Snapshot != nil) {
		return nil, fmt.Errorf("data dir %s holds a log but no %s: refusing to guess the membership", cfg.DataDir, stateFileName)
	}
	if found && rec.Snapshot != nil && rec.Snapshot.Meta.Index > state.Applied {
		// The snapshot is newer than the table we wrote (installed from the
		// leader, or --force-new-cluster): its member table is the truth.
		members, err := decodeMembershipBlob(rec.Snapshot.Membership)
		if err != nil {
			return nil, fmt.Errorf("data dir %s: snapshot %d: %w", cfg.DataDir, rec.Snapshot.Meta.Index, err)
		}
		if len(members) > 0 {
			state.Members, state.Applied = memberRecordsOf(members), rec.Snapshot.Meta.Index
		}
	}
	if state.Removed {
		return nil, fmt.Errorf("data dir %s belongs to member %s, which was removed from the cluster: wipe the data dir and join again as a new member (--join)", cfg.DataDir, cfg.Name)
	}
	if found && cfg.Join != "" {
		log.Info("node: the data dir holds a member already; --join is ignored", "join", cfg.Join)
	}
	// The transport listens first: peers discovering us need our answer.
	handler := &wireHandler{log: log}
	wireCompression, err := wire.ParseCompression(cfg.Compression)
	if err != nil {
		return nil, err
	}
	tr, err := wire.NewTransport(wire.Config{
		LocalID: self, LocalName: cfg.Name, ClusterID: cfg.ClusterID(),
		ListenAddr: cfg.ListenPeer, Compression: wireCompression,
		Handler: handler, Logger: log,
	})
	if err != nil {
		return nil, fmt.Errorf("--listen-peer %s: %w", cfg.ListenPeer, err)
	}
	s.transport = tr
	s.PeerAddr = tr.Addr().String()
	if !found {
		switch {
		case cfg.Join != "":
			if state.Members, err = joinCluster(ctx, cfg, self, log); err != nil {
				return nil, err
			}
		case len(cfg.InitialCluster) == 1:
			state.Members = []MemberRecord{{Name: cfg.Name, ID: self, Peer: cfg.AdvertisePeer}} // the client address is announced (members.go)
		default:
			if state.Members, err = discoverMembers(ctx, cfg, self, log); err != nil {
				return nil, err
			}
		}
	}
	state.BootEpoch++
	if err := writeState(cfg.DataDir, state); err != nil {
		return nil, fmt.Errorf("data dir %s: %w", cfg.DataDir, err)
	}
	s.state = state
	s.metrics = ops.NewMetrics()
	if cfg.Trace == config.TraceEBPF {
		s.tracer = startTracing(s.metrics, log) // before the member starts: every batch is traced
	}
	s.name, s.advertiseClient = cfg.Name, cfg.AdvertiseClient
	n, err := New(Config{
		Metrics: s.metrics,
		ID:      rec.Meta.MemberID, Name: cfg.Name,
		Table: state.Members, TableApplied: state.Applied,
		ClientAddr: cfg.AdvertiseClient, PeerAddr: cfg.AdvertisePeer,
		OnMembers: s.saveMembers, OnRemoved: s.saveRemoved,
		TickInterval: cfg.HeartbeatInterval, ElectionTicks: int(cfg.ElectionTimeout / cfg.HeartbeatInterval),
		RequestTimeout: cfg.RequestTimeout, BootEpoch: state.BootEpoch,
		RandSeed: uint64(rec.Meta.MemberID) ^ uint64(time.Now().UnixNano()),
		KV: kv.Config{
			QuotaBytes: uint64(cfg.QuotaBytes), IdempotencyTTL: cfg.IdempotencyTTL, IdempotencyMaxKeys: cfg.IdempotencyMaxKeys,
			Limits: kv.Limits{MaxValueBytes: int(cfg.MaxValueBytes), MaxBatchOps: cfg.MaxTxnOps},
		},
		Store: disk, Recovered: recovered,
		// Snapshots record the member table (membership.go: tableBlob).
		SnapshotEntries: cfg.SnapshotEntries,
		Logger:          log,
		Batch:           batchConfig(cfg), MaxInflightBytes: uint64(cfg.MaxInflightBytes),
	})
	if err != nil {
		return nil, err
	}
	s.node = n
	handler.n.Store(n)
	api, err := httpapi.New(httpapi.Config{
		MaxValueBytes: int(cfg.MaxValueBytes), MaxRequestBytes: int(cfg.MaxRequestBytes), MaxTxnOps: cfg.MaxTxnOps,
	}, n.Backend(), log)
	if err != nil {
		return nil, err
	}
	s.api = api
	ops.SetProfilingRates(ops.ProfilingRates{MutexFraction: cfg.MutexProfileFraction, BlockRateNanos: int(cfg.BlockProfileRate)})
	api.Handle("/metrics", s.metrics.MetricsHandler)
	api.HandleSnapshot(n.BackupSource(cfg.Name))
	api.Handle("/v1/cluster", ops.ClusterHandler(s.fillClusterStatus))
	mh := ops.NewMembershipHandlers(n.MembershipBackend(cfg.ClusterID(), func(ctx context.Context, peer, name string) (raftmsg.NodeID, error) {
		return probeMemberID(ctx, peer, cfg.ClusterID(), self, cfg.Name, name)
	}), cfg.Name, cfg.RequestTimeout+time.Second)
	api.Handle(ops.MembersPath, mh.Members)
	api.HandlePrefix(ops.MembersPrefix, mh.Member)
	api.Handle(ops.TransferLeaderPath, mh.TransferLeader)
	api.Handle("/debug/pprof", ops.PprofHandler)
	api.HandlePrefix("/debug/pprof/", ops.PprofHandler)
	srv := api.Server()
	srv.Handler = s.metrics.Middleware(s.drainMiddleware(srv.Handler))
	ln, err := net.Listen("tcp", cfg.ListenClient)
	if err != nil {
		return nil, fmt.Errorf("--listen-client %s: %w", cfg.ListenClient, err)
	}
	s.clientLn = newClientListener(ln)
	s.ClientAddr = ln.Addr().String()
	n.Start(tr)
	go func() {
		if err := api.Server().Serve(s.clientLn); err != nil {
			s.serveErr <- err
		}
	}()
	go s.watch()
	return s, nil
}

// batchConfig maps the batching flags onto the batcher's configuration.
// --max-batch-delay 0 means "never hold"; the batcher reads a zero field
// as "use the default", so it becomes the shortest hold, 1ns.
func batchConfig(cfg config.Config) batch.Config {
	delay := cfg.MaxBatchDelay
	if delay == 0 {
		delay = time.Nanosecond
	}
	return batch.Config{MaxBatchBytes: cfg.MaxBatchBytes, MaxBatchDelay: delay, MaxPending: cfg.MaxPending}
}

// readState reads the runtime's state file and checks it against the
// flags; found is false for a new data dir.
func readState(cfg config.Config, self raftmsg.NodeID) (st stateFile, found bool, err error) {
	path := filepath.Join(cfg.DataDir, stateFileName)
	buf, err := vfs.ReadFile(vfs.Default(), path, maxStateFileBytes)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return st, false, nil
	case err != nil:
		return st, false, fmt.Errorf("read %s: %w", path, err)
	}
	if err := json.Unmarshal(buf, &st); err != nil {
		return st, false, fmt.Errorf("%s is damaged: %w", path, err)
	}
	tab := newMemberTable(st.Members, st.Applied)
	if err := tab.check(); err != nil {
		return st, false, fmt.Errorf("%s: %w", path, err)
	}
	me, ok := tab.byID(self)
	switch {
	case !ok && !st.Removed:
		return st, false, fmt.Errorf("%s: does not list this member (id %016x)", path, uint64(self))
	case ok && me.Name != cfg.Name:
		return st, false, fmt.Errorf("%s: records this member as %q, not %q", path, me.Name, cfg.Name)
	}
	return st, true, nil
}

// writeState replaces the state file atomically and durably.
func writeState(dir string, st stateFile) error {
	path := filepath.Join(dir, stateFileName)
	out, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	if err := vfs.WriteFileAtomic(vfs.Default(), path, append(out, '\n')); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// Done is closed when the server stops: Close, a fatal member error or
// the HTTP server failing (then Err says why).
func (s *Server) Done() <-chan struct{} { return s.done }

// watch closes done when the member or the HTTP server stops.
func (s *Server) watch() {
	defer close(s.done)
	select {
	case <-s.node.Done():
	case <-s.node.Removed():
		// Let the answer to the removal and the leader's last messages
		// leave before the process goes (a removed leader hands over).
		s.Drain(2 * s.cfg.ElectionTimeout)
	case err := <-s.serveErr:
		s.errMu.Lock()
		s.serveFailure = err
		s.errMu.Unlock()
	}
}

// Err returns why the server stopped by itself, if it did.
func (s *Server) Err() error {
	if err := s.node.Err(); err != nil {
		return err
	}
	s.errMu.Lock()
	defer s.errMu.Unlock()
	if s.serveFailure != nil {
		return fmt.Errorf("http server: %w", s.serveFailure)
	}
	return nil
}

// Close stops serving clients, then the member, the transport and the
// store, in that order, and waits for each.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.closeErr = s.shutdown()
		<-s.done
	})
	return s.closeErr
}

func (s *Server) shutdown() error {
	var errs []error
	if s.api != nil && s.clientLn != nil {
		if err := s.shutdownHTTP(10 * time.Second); err != nil {
			errs = append(errs, fmt.Errorf("http shutdown: %w", err))
		}
	} else if s.clientLn != nil {
		s.clientLn.Close()
	}
	if s.node != nil {
		if err := s.node.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	if s.transport != nil {
		s.transport.Close()
	}
	if s.store != nil {
		if err := s.store.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close storage: %w", err))
		}
	}
	if s.tracer != nil {
		if err := s.tracer.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// shutdownHTTP stops the HTTP server within timeout: it stops accepting,
// closes keep-alive connections as they go idle (fasthttp) and silent ones
// as they are found (clientListener), and waits for the rest.
func (s *Server) shutdownHTTP(timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.api.Server().ShutdownWithContext(ctx) }()
	// As often as fasthttp looks for idle connections: one accepted just
	// before the listener closed is found at the next tick.
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		s.clientLn.closeSilent()
		select {
		case err := <-done:
			return err
		case <-tick.C:
		}
	}
}

// fillClusterStatus answers GET /v1/cluster from the member table (names,
// addresses) and the core's status (configuration in force; replication
// progress, known on the leader only: a follower reports itself and the
// leader it hears as reachable, and no match index).
func (s *Server) fillClusterStatus(cs *ops.ClusterStatus) {
	n := s.node
	st, _ := n.Status(time.Second)
	cs.Name = s.name
	cs.Leader = n.memberName(n.Leader())
	cs.Term, cs.CommitIndex = st.Term, st.Commit
	cs.AppliedIndex = n.View().AppliedIndex()
	peers := map[raftmsg.NodeID]consensus.PeerStatus{}
	for _, p := range st.Peers {
		peers[p.ID] = p
	}
	for _, m := range n.Members() {
		// Voter as applied: a promotion appended but not yet applied here
		// shows once it is done (the runbooks wait for that).
		ms := ops.MemberStatus{Name: m.Name, Peer: m.Peer, Client: m.Client, Voter: !m.Learner}
		if m.ID == n.ID() {
			ms.Client = s.advertiseClient
			ms.Reachable = true
		}
		if p, ok := peers[m.ID]; ok {
			ms.Reachable = p.RecentActive
			ms.MatchIndex = p.Match
			if st.LastIndex > p.Match {
				ms.Lag = st.LastIndex - p.Match
			}
		} else if m.ID == n.Leader() {
			ms.Reachable = true
		}
		cs.Members = append(cs.Members, ms)
	}
}

// saveMembers persists the member table (called by the applier).
func (s *Server) saveMembers(members []MemberRecord, applied uint64) error {
	s.stateMu.Lock()
	defer s.stateMu.Unlock()
	s.state.Members, s.state.Applied = members, applied
	return writeState(s.cfg.DataDir, s.state)
}

// saveRemoved records that this member was removed, so that it never
// starts again under its identity.
func (s *Server) saveRemoved() {
	s.stateMu.Lock()
	defer s.stateMu.Unlock()
	s.state.Removed = true
	if err := writeState(s.cfg.DataDir, s.state); err != nil {
		s.log.Error("node: cannot record the removal in the data dir", "err", err)
	}
}

// wireHandler connects the peer transport to the member; until the member
// exists (during discovery), inbound batches are dropped.
type wireHandler struct {
	n   atomic.Pointer[Node]
	log *slog.Logger
}

func (h *wireHandler) HandleBatch(b *wire.Batch) {
	for _, f := range b.Forwards {
		// Writes reach the leader as Raft proposals, not as forwards.
		h.log.Debug("node: forwarded request refused (unsupported)", "from", uint64(b.From), "id", f.RequestID)
	}
	n := h.n.Load()
	if n == nil || len(b.Messages) == 0 {
		b.Release()
		return
	}
	n.Receive(b.Messages, b.Release)
}

func (h *wireHandler) HandleSnapshot(msg raftmsg.Message, data io.Reader) error {
	n := h.n.Load()
	if n == nil {
		return errors.New("node: not started yet")
	}
	return n.ReceiveSnapshot(msg, data)
}

func (h *wireHandler) PeerUnreachable(id raftmsg.NodeID) {
	if n := h.n.Load(); n != nil {
		n.ReportUnreachable(id)
	}
}

func (h *wireHandler) SnapshotDone(to raftmsg.NodeID, index uint64, err error) {
	if n := h.n.Load(); n != nil {
		n.SnapshotDone(to, index, err)
	}
}
