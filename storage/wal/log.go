package wal

import (
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"

	"github.com/edgekv/edgekv/consensus/raftmsg"
	"github.com/edgekv/edgekv/storage/diskerr"
	"github.com/edgekv/edgekv/storage/vfs"
)

// Defaults for Options.
const (
	DefaultSegmentBytes    = 64 << 20
	DefaultMaxPendingBytes = 64 << 20
)

// headerBatchBytes is the size of a segment's header batch.
const headerBatchBytes = headerBytes + segmentHeaderBytes + headerBytes + hardStateBytes +
	headerBytes + snapshotRefBytes + batchEndRecordBytes

// Options configure a Log.
type Options struct {
	FS  vfs.FS
	Dir string
	// SegmentBytes is the size segments are preallocated to and rotated at.
	SegmentBytes int64
	// MaxPendingBytes bounds the encoded bytes waiting for the next sync;
	// Save blocks while it is exceeded (one batch larger than it still
	// passes alone).
	MaxPendingBytes int
	Logger          *slog.Logger
}

// Recovered is the log's content at Open.
type Recovered struct {
	HardState raftmsg.HardState
	// Snapshot is the newest snapshot reference made durable in the log
	// (zero if none). Its Reset flag carries no meaning here.
	Snapshot SnapshotRef
	// Entries follow Snapshot.Index without a gap. Their Data is owned by
	// the caller.
	Entries []raftmsg.Entry
	// TornBytes is how many bytes of an unsynced last batch were dropped.
	TornBytes int64
}

// logState is what the log holds after a set of batches.
type logState struct {
	hs        raftmsg.HardState
	snap      SnapshotRef
	lastIndex uint64
}

// batch is the encoded records of one or more submissions, synced together.
type batch struct {
	buf         []byte
	completions []completion
	maxIndex    uint64
	state       logState // the log's state once this batch is durable
	hasSnapRef  bool
}

func (b *batch) empty() bool { return len(b.completions) == 0 }

func (b *batch) reset() {
	b.buf = b.buf[:0]
	clear(b.completions)
	b.completions = b.completions[:0]
	b.maxIndex = 0
	b.hasSnapRef = false
}

// completion is how a submitter learns its batch's outcome: a channel
// (Save) or a callback (Submit).
type completion struct {
	ch chan error
	fn func(error)
}

func (c completion) complete(err error) {
	if c.fn != nil {
		c.fn(err)
		return
	}
	c.ch <- err
}

// Log is an open write-ahead log. Save and Submit are safe for concurrent
// use; one goroutine (started by Open, stopped by Close) writes and syncs.
type Log struct {
	fs              vfs.FS
	dir             string
	logger          *slog.Logger
	segmentBytes    int64
	maxPendingBytes int

	// Owned by the flush goroutine once Open returns.
	seg     vfs.File
	segSeq  uint64
	segOff  int64
	durable logState

	compactMu sync.Mutex // serialises Compact calls (only they remove segments)

	segMu sync.Mutex // guards the fields below (read by Compact)
	// segments lists the segment files, oldest first; the last is active.
	segments []segment
	// snapSeq is the segment holding the newest durable snapshot ref,
	// snapIndex its index: segments before snapSeq whose entries are all at
	// or below snapIndex can be removed.
	snapSeq, snapIndex uint64

	mu      sync.Mutex // guards the fields below
	work    sync.Cond  // signalled when pending gains a submission or closing is set
	space   sync.Cond  // signalled when pending is taken by the flush goroutine
	pending *batch
	spare   *batch // nil while the flush goroutine holds it
	// accepted is the log's state after every accepted submission.
	accepted logState
	// failed is sticky: set when a sync failed or a failed write could not
	// be undone.
	failed  error
	closing bool

	stopped chan struct{}
	chans   sync.Pool // of chan error, for Save

	// prepared receives the next segment file, zero-filled and synced by a
	// background goroutine so that rotation does not stall on it and
	// fdatasync of appends into it has no block allocation or extent
	// conversion to journal. prepInFlight (owned by the flush goroutine)
	// says whether a preparation was started and not yet received.
	prepared     chan preparedSegment
	prepInFlight bool
}

// preparedSegment is a zero-filled, synced file under a temporary name
// (prepSuffix), waiting to become segment seq.
type preparedSegment struct {
	seq       uint64
	f         vfs.File
	path      string
	sizeBytes int64
	err       error
}

const prepSuffix = ".prep"

// Open replays the log in opts.Dir (creating it if empty), truncates a torn
// unsynced tail, starts a new segment for appends and returns the content.
func Open(opts Options) (*Log, *Recovered, error) {
	if opts.FS == nil {
		opts.FS = vfs.Default()
	}
	if opts.SegmentBytes <= 0 {
		opts.SegmentBytes = DefaultSegmentBytes
	}
	opts.SegmentBytes = max(opts.SegmentBytes, 4*headerBatchBytes)
	if opts.MaxPendingBytes <= 0 {
		opts.MaxPendingBytes = DefaultMaxPendingBytes
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if err := opts.FS.MkdirAll(opts.Dir); err != nil {
		return nil, nil, fmt.Errorf("wal: create %s: %w", opts.Dir, diskerr.Classify(err))
	}
	st, last, err := replaySegments(opts.FS, opts.Dir)
	if err != nil {
		return nil, nil, err
	}
	l := &Log{
		fs:              opts.FS,
		dir:             opts.Dir,
		logger:          opts.Logger,
		segmentBytes:    opts.SegmentBytes,
		maxPendingBytes: opts.MaxPendingBytes,
		pending:         &batch{},
		spare:           &batch{},
		stopped:         make(chan struct{}),
		segments:        st.segments,
		prepared:        make(chan preparedSegment, 1),
	}
	l.work.L = &l.mu
	l.space.L = &l.mu
	if err := l.sealLastSegment(last); err != nil {
		return nil, nil, err
	}
	if err := l.removePrepared(); err != nil {
		return nil, nil, err
	}
	lastIndex := st.snap.Index
	if n := len(st.entries); n > 0 {
		lastIndex = st.entries[n-1].Index
	}
	st.snap.Reset = false
	l.durable = logState{hs: st.hs, snap: st.snap, lastIndex: lastIndex}
	l.accepted = l.durable
	nextSeq := uint64(1)
	if n := len(l.segments); n > 0 {
		nextSeq = l.segments[n-1].seq + 1
	}
	if err := l.createSegment(nextSeq, l.segmentBytes); err != nil {
		return nil, nil, err
	}
	l.snapSeq, l.snapIndex = nextSeq, st.snap.Index
	go l.run()
	return l, &Recovered{HardState: st.hs, Snapshot: st.snap, Entries: st.entries, TornBytes: last.tornBytes}, nil
}

// sealLastSegment makes the last segment end exactly after its last
// complete batch (or removes it if it has none), so that nothing after
// that point can be mistaken for data later. New appends go to a new
// segment.
func (l *Log) sealLastSegment(last scanResult) error {
	n := len(l.segments)
	if n == 0 {
		return nil
	}
	path := filepath.Join(l.dir, segmentName(l.segments[n-1].seq))
	if !last.hasHeader {
		// Crashed while creating it: its header batch was never synced.
		if err := l.fs.Remove(path); err != nil {
			return fmt.Errorf("wal: remove unfinished segment: %w", err)
		}
		if err := l.fs.SyncDir(l.dir); err != nil {
			return fmt.Errorf("wal: sync dir: %w", err)
		}
		l.logger.Warn("wal: removed a segment whose creation never completed", "file", path)
		l.segments = l.segments[:n-1]
		return nil
	}
	f, err := l.fs.Open(path)
	if err != nil {
		return fmt.Errorf("wal: open last segment: %w", err)
	}
	defer f.Close()
	size, err := f.Size()
	if err != nil {
		return fmt.Errorf("wal: stat last segment: %w", err)
	}
	if size == last.validEnd {
		return nil
	}
	if err := f.Truncate(last.validEnd); err != nil {
		return fmt.Errorf("wal: truncate torn tail of %s: %w", path, diskerr.Classify(err))
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("wal: sync truncated %s: %w", path, diskerr.Classify(err))
	}
	if last.tornBytes > 0 {
		l.logger.Warn("wal: dropped the torn tail of an unsynced batch", "file", path,
			"offset", last.validEnd, "bytes", last.tornBytes)
	}
	return nil
}

// removePrepared deletes prepared segment files a crash left behind.
func (l *Log) removePrepared() error {
	names, err := l.fs.List(l.dir)
	if err != nil {
		return fmt.Errorf("wal: list %s: %w", l.dir, err)
	}
	removed := false
	for _, name := range names {
		if strings.HasSuffix(name, segmentSuffix+prepSuffix) {
			if err := l.fs.Remove(filepath.Join(l.dir, name)); err != nil {
				return fmt.Errorf("wal: remove %s: %w", name, err)
			}
			removed = true
		}
	}
	if removed {
		return l.fs.SyncDir(l.dir)
	}
	return nil
}

// prepare creates segment seq's file under a temporary name, reserves and
// zero-fills it, syncs it and hands it to the flush goroutine.
func (l *Log) prepare(seq uint64, sizeBytes int64) {
	path := filepath.Join(l.dir, segmentName(seq)+prepSuffix)
	p := preparedSegment{seq: seq, path: path, sizeBytes: sizeBytes}
	f, err := l.fs.Create(path)
	if err == nil {
		p.f = f
		err = f.Preallocate(sizeBytes) // fails fast on a full disk
		if err == nil {
			err = f.ZeroFill(sizeBytes)
		}
		if err == nil {
			err = f.Sync()
		}
	}
	p.err = err
	l.prepared <- p
}

// takePrepared returns the prepared file for seq if one of at least
// sizeBytes is ready or in flight (waiting for it), else nil; any other
// prepared file is discarded.
func (l *Log) takePrepared(seq uint64, sizeBytes int64) *preparedSegment {
	if !l.prepInFlight {
		return nil
	}
	p := <-l.prepared
	l.prepInFlight = false
	if p.err == nil && p.seq == seq && p.sizeBytes >= sizeBytes {
		return &p
	}
	l.discardPrepared(p)
	return nil
}

func (l *Log) discardPrepared(p preparedSegment) {
	if p.f != nil {
		p.f.Close()
		if err := l.fs.Remove(p.path); err != nil {
			l.logger.Warn("wal: remove unused prepared segment", "file", p.path, "err", err)
		}
	}
	if p.err != nil {
		l.logger.Warn("wal: preparing the next segment failed; creating it at rotation", "err", p.err)
	}
}

// createSegment makes segment seq the active one: the prepared file if
// there is one, else a new preallocated file; it writes and syncs the
// header batch, gives the file its name and syncs the directory, then
// starts preparing the next segment. On failure the old active segment
// stays active.
func (l *Log) createSegment(seq uint64, sizeBytes int64) error {
	path := filepath.Join(l.dir, segmentName(seq))
	var f vfs.File
	tmpPath := ""
	if p := l.takePrepared(seq, sizeBytes); p != nil {
		f, tmpPath = p.f, p.path
	} else {
		var err error
		if f, err = l.fs.Create(path); err != nil {
			return fmt.Errorf("wal: create segment: %w", diskerr.Classify(err))
		}
	}
	undo := func(cause error) error {
		f.Close()
		victim := path
		if tmpPath != "" {
			victim = tmpPath
		}
		if rerr := l.fs.Remove(victim); rerr == nil {
			_ = l.fs.SyncDir(l.dir) // best effort: a leftover headerless segment is removed at recovery
		}
		return cause
	}
	if tmpPath == "" {
		if err := f.Preallocate(sizeBytes); err != nil {
			return undo(fmt.Errorf("wal: preallocate %s: %w", path, diskerr.Classify(err)))
		}
	}
	buf := appendSegmentHeader(nil, seq)
	buf = appendHardState(buf, l.durable.hs)
	buf = appendSnapshotRef(buf, SnapshotRef{Index: l.durable.snap.Index, Term: l.durable.snap.Term})
	buf = appendBatchEnd(buf, int64(len(buf)))
	if _, err := f.WriteAt(buf, 0); err != nil {
		return undo(fmt.Errorf("wal: write header of %s: %w", path, diskerr.Classify(err)))
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("wal: sync new segment %s: %w: %w", path, diskerr.ErrFailed, diskerr.Classify(err))
	}
	if tmpPath != "" {
		if err := l.fs.Rename(tmpPath, path); err != nil {
			return undo(fmt.Errorf("wal: rename %s: %w", tmpPath, diskerr.Classify(err)))
		}
	}
	if err := l.fs.SyncDir(l.dir); err != nil {
		f.Close()
		return fmt.Errorf("wal: sync dir for %s: %w: %w", path, diskerr.ErrFailed, diskerr.Classify(err))
	}
	if l.seg != nil {
		l.seg.Close()
	}
	if l.seg != nil && seq != l.segSeq+1 {
		panic(fmt.Sprintf("wal: segment %d follows %d", seq, l.segSeq))
	}
	l.seg, l.segSeq, l.segOff = f, seq, int64(len(buf))
	l.segMu.Lock()
	if n := len(l.segments); n == 0 || l.segments[n-1].seq != seq {
		l.segments = append(l.segments, segment{seq: seq})
	}
	l.segMu.Unlock()
	l.prepInFlight = true
	go l.prepare(seq+1, l.segmentBytes)
	return nil
}

// Save appends ents and records hs (skipped when empty or unchanged) and
// returns once they are durable. Concurrent calls share one fdatasync.
// An entry at index i replaces any entry at i or later (Raft log
// truncation); ents must be contiguous, start no later than one past the
// last entry, and above the newest snapshot.
func (l *Log) Save(hs raftmsg.HardState, ents []raftmsg.Entry) error {
	ch, _ := l.chans.Get().(chan error)
	if ch == nil {
		ch = make(chan error, 1)
	}
	if err := l.submit(hs, ents, nil, completion{ch: ch}); err != nil {
		l.chans.Put(ch)
		return err
	}
	err := <-ch
	l.chans.Put(ch)
	return err
}

// Submit is Save without waiting: it encodes the records at once (the
// caller may reuse ents afterwards) and calls done from the log's goroutine
// once they are durable or failed. done must not block or call the log.
// Batches are made durable in submission order, so a caller can hand over
// batch N+1 while batch N is being synced. An error returned by Submit
// itself means nothing was queued and done will not be called.
func (l *Log) Submit(hs raftmsg.HardState, ents []raftmsg.Entry, done func(error)) error {
	if done == nil {
		return errors.New("wal: Submit without a completion callback")
	}
	return l.submit(hs, ents, nil, completion{fn: done})
}

// SaveSnapshotRef durably records that the snapshot file at ref is
// complete and durable. With ref.Reset the whole log before it is
// dropped (an installed snapshot); otherwise entries up to ref.Index.
func (l *Log) SaveSnapshotRef(ref SnapshotRef) error {
	ch := make(chan error, 1)
	if err := l.submit(raftmsg.HardState{}, nil, &ref, completion{ch: ch}); err != nil {
		return err
	}
	return <-ch
}

func (l *Log) submit(hs raftmsg.HardState, ents []raftmsg.Entry, ref *SnapshotRef, c completion) error {
	for i := 1; i < len(ents); i++ {
		if ents[i].Index != ents[i-1].Index+1 {
			return fmt.Errorf("wal: entries not contiguous: %d follows %d", ents[i].Index, ents[i-1].Index)
		}
	}
	var encodedBytes int
	for i := range ents {
		encodedBytes += headerBytes + entryFixedBytes + len(ents[i].Data)
		if len(ents[i].Data) > MaxPayloadBytes-entryFixedBytes {
			return fmt.Errorf("wal: entry %d of %d bytes exceeds the record limit", ents[i].Index, len(ents[i].Data))
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for !l.closing && l.failed == nil && !l.pending.empty() && len(l.pending.buf)+encodedBytes > l.maxPendingBytes {
		l.space.Wait()
	}
	if l.closing {
		return diskerr.ErrClosed
	}
	if l.failed != nil {
		return l.failed
	}
	if len(ents) > 0 {
		if first := ents[0].Index; first <= l.accepted.snap.Index {
			return fmt.Errorf("wal: entry %d is covered by the snapshot at %d", first, l.accepted.snap.Index)
		} else if first > l.accepted.lastIndex+1 {
			return fmt.Errorf("wal: entry %d leaves a gap after %d", first, l.accepted.lastIndex)
		}
	}
	b := l.pending
	for i := range ents {
		b.buf = appendEntry(b.buf, &ents[i])
	}
	if len(ents) > 0 {
		l.accepted.lastIndex = ents[len(ents)-1].Index
		b.maxIndex = max(b.maxIndex, l.accepted.lastIndex)
	}
	if !hs.IsEmpty() && hs != l.accepted.hs {
		b.buf = appendHardState(b.buf, hs)
		l.accepted.hs = hs
	}
	if ref != nil {
		b.buf = appendSnapshotRef(b.buf, *ref)
		if ref.Reset {
			l.accepted.lastIndex = ref.Index
		} else {
			l.accepted.lastIndex = max(l.accepted.lastIndex, ref.Index)
		}
		l.accepted.snap = SnapshotRef{Index: ref.Index, Term: ref.Term}
		b.hasSnapRef = true
	}
	b.state = l.accepted
	b.completions = append(b.completions, c)
	l.work.Signal()
	return nil
}

// run is the flush goroutine: it takes the pending batch, writes and syncs
// it, completes its submitters, and repeats until closed and drained.
func (l *Log) run() {
	defer close(l.stopped)
	for {
		l.mu.Lock()
		for l.pending.empty() && !l.closing {
			l.work.Wait()
		}
		if l.pending.empty() && l.closing {
			l.mu.Unlock()
			return
		}
		b := l.pending
		l.pending, l.spare = l.spare, nil
		l.space.Broadcast()
		failed := l.failed
		l.mu.Unlock()

		err := failed
		if err == nil {
			err = l.flush(b)
		}
		for _, c := range b.completions {
			c.complete(err)
		}
		b.reset()
		l.mu.Lock()
		l.spare = b
		l.mu.Unlock()
	}
}

// flush writes one batch and syncs it. On a write error that could be
// undone, the log stays usable (ErrNoSpace or ErrIO); otherwise it fails
// for good (ErrFailed). Either way the submissions queued behind the batch
// fail too, since they may depend on it.
func (l *Log) flush(b *batch) error {
	if len(b.buf) == 0 {
		return nil
	}
	need := int64(len(b.buf)) + batchEndRecordBytes
	if l.segOff+need > l.segmentBytes && l.segOff > headerBatchBytes {
		if err := l.createSegment(l.segSeq+1, max(l.segmentBytes, headerBatchBytes+need)); err != nil {
			return l.fail(err)
		}
	}
	if l.segOff < headerBatchBytes || l.segOff+need > max(l.segmentBytes, headerBatchBytes+need) {
		panic(fmt.Sprintf("wal: batch of %d bytes at offset %d does not fit segment %d", need, l.segOff, l.segSeq))
	}
	b.buf = appendBatchEnd(b.buf, l.segOff+int64(len(b.buf)))
	if _, err := l.seg.WriteAt(b.buf, l.segOff); err != nil {
		werr := fmt.Errorf("wal: write segment %s: %w", segmentName(l.segSeq), diskerr.Classify(err))
		// Remove what may have reached the file, so that nothing after the
		// last good batch can be read back later.
		if terr := l.seg.Truncate(l.segOff); terr != nil {
			return l.fail(fmt.Errorf("%w: %w (undo failed: %v)", diskerr.ErrFailed, werr, terr))
		}
		if serr := l.seg.Sync(); serr != nil {
			return l.fail(fmt.Errorf("%w: %w (sync after undo failed: %v)", diskerr.ErrFailed, werr, serr))
		}
		return l.fail(werr)
	}
	if err := l.seg.Sync(); err != nil {
		// After a failed fsync the kernel may have dropped the dirty pages
		// and cleared the error: nothing since the last good sync can be
		// trusted, so refuse every later write until reopened from disk.
		return l.fail(fmt.Errorf("wal: sync segment %s: %w: %w", segmentName(l.segSeq), diskerr.ErrFailed, diskerr.Classify(err)))
	}
	l.segOff += int64(len(b.buf))
	l.durable = b.state
	l.segMu.Lock()
	last := &l.segments[len(l.segments)-1]
	last.maxIndex = max(last.maxIndex, b.maxIndex)
	if b.hasSnapRef {
		l.snapSeq, l.snapIndex = l.segSeq, b.state.snap.Index
	}
	l.segMu.Unlock()
	return nil
}

// fail records err (sticky if it is ErrFailed), fails every submission
// queued behind the current batch and rolls the accepted state back to the
// durable one.
func (l *Log) fail(err error) error {
	l.mu.Lock()
	if errors.Is(err, diskerr.ErrFailed) {
		l.failed = err
		l.logger.Error("wal: storage failed; reopen required", "err", err)
	} else {
		l.logger.Warn("wal: write failed, nothing acknowledged", "err", err)
	}
	queued := l.pending
	l.pending = &batch{}
	l.accepted = l.durable
	l.space.Broadcast()
	l.mu.Unlock()
	for _, c := range queued.completions {
		c.complete(err)
	}
	return err
}

// LastIndex is the index of the last accepted entry (or of the snapshot):
// the next Save may start at most one past it.
func (l *Log) LastIndex() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.accepted.lastIndex
}

// Err returns the sticky failure, if any.
func (l *Log) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.failed
}

// Compact removes the oldest segments whose entries are all covered by the
// newest durable snapshot reference, oldest first, syncing the directory
// after each so that a crash never leaves a gap. It returns how many it
// removed.
func (l *Log) Compact() (int, error) {
	l.compactMu.Lock()
	defer l.compactMu.Unlock()
	l.segMu.Lock()
	var victims []uint64
	var prefixMax uint64
	for _, s := range l.segments {
		prefixMax = max(prefixMax, s.maxIndex)
		if s.seq >= l.snapSeq || prefixMax > l.snapIndex {
			break
		}
		victims = append(victims, s.seq)
	}
	l.segMu.Unlock()
	for i, seq := range victims {
		path := filepath.Join(l.dir, segmentName(seq))
		if err := l.fs.Remove(path); err != nil {
			return i, fmt.Errorf("wal: remove %s: %w", path, err)
		}
		if err := l.fs.SyncDir(l.dir); err != nil {
			return i, fmt.Errorf("wal: sync dir after removing %s: %w", path, err)
		}
		l.segMu.Lock()
		l.segments = l.segments[1:]
		l.segMu.Unlock()
	}
	return len(victims), nil
}

// Segments returns the sequence numbers of the segment files, oldest first.
func (l *Log) Segments() []uint64 {
	l.segMu.Lock()
	defer l.segMu.Unlock()
	seqs := make([]uint64, len(l.segments))
	for i, s := range l.segments {
		seqs[i] = s.seq
	}
	return seqs
}

// Close waits for queued submissions to be written and synced, stops the
// flush goroutine and closes the active segment.
func (l *Log) Close() error {
	l.mu.Lock()
	if l.closing {
		l.mu.Unlock()
		return diskerr.ErrClosed
	}
	l.closing = true
	l.work.Signal()
	l.space.Broadcast()
	l.mu.Unlock()
	<-l.stopped
	if l.prepInFlight {
		l.discardPrepared(<-l.prepared)
		l.prepInFlight = false
	}
	return l.seg.Close()
}
