package httpapi

import (
	"bytes"
	"context"
	"sort"
	"sync"
)

// memBackend is an in-memory Backend, good enough to check the HTTP
// wiring: conditions, idempotency, ordering, revisions. It is not a model
// of the replicated store (no Raft, no durability).
type memBackend struct {
	mu       sync.Mutex
	rev      uint64
	kv       map[string]memEntry
	idem     map[string]memOutcome
	meta     Meta // Follower/Leader reported with every result
	readyErr error
	// failWith, when set, is returned by the next Put/Get/Delete/List/
	// DeletePrefix/Batch call (and cleared).
	failWith error
	// ignoreMaxBytes makes List disregard ListRequest.MaxBytes.
	ignoreMaxBytes bool
	// panicNext makes the next call panic (to test recovery).
	panicNext bool
	// last* record the latest request of each kind (deep copies).
	lastPut   PutRequest
	lastGet   GetRequest
	lastList  ListRequest
	lastBatch BatchRequest
}

type memEntry struct {
	value []byte
	rev   uint64
}

type memOutcome struct {
	fp  Fingerprint
	rev uint64
	n   uint64
	err error
}

func newMemBackend() *memBackend {
	return &memBackend{kv: make(map[string]memEntry), idem: make(map[string]memOutcome)}
}

func (m *memBackend) metaLocked() Meta {
	mt := m.meta
	mt.Revision = m.rev
	return mt
}

func (m *memBackend) Meta() Meta {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.metaLocked()
}

func (m *memBackend) Ready(context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.readyErr
}

// injected returns the injected failure, if any; called with mu held.
func (m *memBackend) injected() error {
	if m.panicNext {
		m.panicNext = false
		panic("memBackend: injected panic")
	}
	err := m.failWith
	m.failWith = nil
	return err
}

// replay returns the remembered outcome of an idempotent request.
func (m *memBackend) replay(id Idempotency) (memOutcome, bool, error) {
	if len(id.Key) == 0 {
		return memOutcome{}, false, nil
	}
	o, ok := m.idem[string(id.Key)]
	if !ok {
		return memOutcome{}, false, nil
	}
	if o.fp != id.Fingerprint {
		return memOutcome{}, false, &Error{Kind: KindIdempotencyConflict, Message: "Idempotency-Key reused with a different request"}
	}
	return o, true, nil
}

func (m *memBackend) remember(id Idempotency, o memOutcome) {
	if len(id.Key) > 0 {
		o.fp = id.Fingerprint
		m.idem[string(id.Key)] = o
	}
}

func (m *memBackend) Put(_ context.Context, req PutRequest) (WriteResult, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.lastPut = PutRequest{Key: bytes.Clone(req.Key), Value: bytes.Clone(req.Value), IfMatch: req.IfMatch,
		IfAbsent: req.IfAbsent, Idempotency: Idempotency{Key: bytes.Clone(req.Idempotency.Key), Fingerprint: req.Idempotency.Fingerprint}}
	if err := m.injected(); err != nil {
		return WriteResult{Meta: m.metaLocked()}, err
	}
	if o, ok, err := m.replay(req.Idempotency); err != nil || ok {
		mt := m.metaLocked()
		mt.Revision = o.rev
		if err != nil {
			return WriteResult{Meta: m.metaLocked()}, err
		}
		return WriteResult{Meta: mt}, o.err
	}
	cur, exists := m.kv[string(req.Key)]
	if (req.IfMatch != 0 && (!exists || cur.rev != req.IfMatch)) || (req.IfAbsent && exists) {
		err := &Error{Kind: KindPreconditionFailed, Message: "condition failed"}
		m.remember(req.Idempotency, memOutcome{err: err})
		return WriteResult{Meta: m.metaLocked()}, err
	}
	m.rev++
	m.kv[string(req.Key)] = memEntry{value: bytes.Clone(req.Value), rev: m.rev}
	m.remember(req.Idempotency, memOutcome{rev: m.rev})
	return WriteResult{Meta: m.metaLocked()}, nil
}

func (m *memBackend) Get(_ context.Context, req GetRequest) (GetResult, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.lastGet = GetRequest{Key: bytes.Clone(req.Key), Consistency: req.Consistency}
	if err := m.injected(); err != nil {
		return GetResult{Meta: m.metaLocked()}, err
	}
	e, ok := m.kv[string(req.Key)]
	if !ok {
		return GetResult{Meta: m.metaLocked()}, &Error{Kind: KindNotFound, Message: "key not found"}
	}
	return GetResult{Meta: m.metaLocked(), Value: e.value, KeyRevision: e.rev}, nil
}

func (m *memBackend) Delete(_ context.Context, req DeleteRequest) (WriteResult, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.injected(); err != nil {
		return WriteResult{Meta: m.metaLocked()}, err
	}
	if o, ok, err := m.replay(req.Idempotency); err != nil || ok {
		mt := m.metaLocked()
		mt.Revision = o.rev
		if err != nil {
			return WriteResult{Meta: m.metaLocked()}, err
		}
		return WriteResult{Meta: mt}, o.err
	}
	cur, exists := m.kv[string(req.Key)]
	if req.IfMatch != 0 && (!exists || cur.rev != req.IfMatch) {
		return WriteResult{Meta: m.metaLocked()}, &Error{Kind: KindPreconditionFailed, Message: "condition failed"}
	}
	if !exists {
		return WriteResult{Meta: m.metaLocked()}, &Error{Kind: KindNotFound, Message: "key not found"}
	}
	m.rev++
	delete(m.kv, string(req.Key))
	m.remember(req.Idempotency, memOutcome{rev: m.rev})
	return WriteResult{Meta: m.metaLocked()}, nil
}

func (m *memBackend) sortedKeys() []string {
	keys := make([]string, 0, len(m.kv))
	for k := range m.kv {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func (m *memBackend) List(_ context.Context, req ListRequest) (ListResult, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.lastList = ListRequest{Prefix: bytes.Clone(req.Prefix), After: bytes.Clone(req.After), Limit: req.Limit,
		MaxBytes: req.MaxBytes, Consistency: req.Consistency}
	if err := m.injected(); err != nil {
		return ListResult{Meta: m.metaLocked()}, err
	}
	res := ListResult{Meta: m.metaLocked()}
	size := 0
	for _, k := range m.sortedKeys() {
		if !bytes.HasPrefix([]byte(k), req.Prefix) || (len(req.After) > 0 && k <= string(req.After)) {
			continue
		}
		if len(res.Items) == req.Limit || (len(res.Items) > 0 && size >= req.MaxBytes && !m.ignoreMaxBytes) {
			res.More = true
			break
		}
		e := m.kv[k]
		res.Items = append(res.Items, ListItem{Key: []byte(k), Value: e.value, Revision: e.rev})
		size += len(k) + len(e.value)
	}
	return res, nil
}

func (m *memBackend) DeletePrefix(_ context.Context, req DeletePrefixRequest) (DeletePrefixResult, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.injected(); err != nil {
		return DeletePrefixResult{Meta: m.metaLocked()}, err
	}
	if o, ok, err := m.replay(req.Idempotency); err != nil || ok {
		mt := m.metaLocked()
		mt.Revision = o.rev
		return DeletePrefixResult{Meta: mt, Deleted: o.n}, err
	}
	var n uint64
	m.rev++
	for k := range m.kv {
		if bytes.HasPrefix([]byte(k), req.Prefix) {
			delete(m.kv, k)
			n++
		}
	}
	m.remember(req.Idempotency, memOutcome{rev: m.rev, n: n})
	return DeletePrefixResult{Meta: m.metaLocked(), Deleted: n}, nil
}

func (m *memBackend) Batch(_ context.Context, req BatchRequest) (WriteResult, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.lastBatch = BatchRequest{Idempotency: Idempotency{Key: bytes.Clone(req.Idempotency.Key), Fingerprint: req.Idempotency.Fingerprint}}
	for _, op := range req.Ops {
		op.Key, op.Value = bytes.Clone(op.Key), bytes.Clone(op.Value)
		m.lastBatch.Ops = append(m.lastBatch.Ops, op)
	}
	if err := m.injected(); err != nil {
		return WriteResult{Meta: m.metaLocked()}, err
	}
	if o, ok, err := m.replay(req.Idempotency); err != nil || ok {
		mt := m.metaLocked()
		mt.Revision = o.rev
		if err != nil {
			return WriteResult{Meta: m.metaLocked()}, err
		}
		return WriteResult{Meta: mt}, o.err
	}
	var failed []int
	for i, op := range req.Ops {
		cur, exists := m.kv[string(op.Key)]
		if (op.IfMatch != 0 && (!exists || cur.rev != op.IfMatch)) || (op.IfAbsent && exists) {
			failed = append(failed, i)
		}
	}
	if failed != nil {
		err := &Error{Kind: KindPreconditionFailed, Message: "batch condition failed", Failed: failed}
		m.remember(req.Idempotency, memOutcome{err: err})
		return WriteResult{Meta: m.metaLocked()}, err
	}
	m.rev++
	for _, op := range req.Ops {
		if op.Kind == OpPut {
			m.kv[string(op.Key)] = memEntry{value: bytes.Clone(op.Value), rev: m.rev}
		} else {
			delete(m.kv, string(op.Key))
		}
	}
	m.remember(req.Idempotency, memOutcome{rev: m.rev})
	return WriteResult{Meta: m.metaLocked()}, nil
}

// fixedBackend answers every call with fixed results and allocates
// nothing: it isolates the handler's own allocations in benchmarks.
type fixedBackend struct {
	value []byte
	zero  bool // report revision 0 everywhere (a contract violation)
}

func (f *fixedBackend) Put(context.Context, PutRequest) (WriteResult, error) {
	if f.zero {
		return WriteResult{}, nil
	}
	return WriteResult{Meta: Meta{Revision: 42}}, nil
}
func (f *fixedBackend) Get(context.Context, GetRequest) (GetResult, error) {
	if f.zero {
		return GetResult{Meta: Meta{Revision: 42}, Value: f.value}, nil
	}
	return GetResult{Meta: Meta{Revision: 42}, Value: f.value, KeyRevision: 7}, nil
}
func (f *fixedBackend) Delete(context.Context, DeleteRequest) (WriteResult, error) {
	return WriteResult{Meta: Meta{Revision: 43}}, nil
}
func (f *fixedBackend) List(context.Context, ListRequest) (ListResult, error) {
	return ListResult{Meta: Meta{Revision: 42}}, nil
}
func (f *fixedBackend) DeletePrefix(context.Context, DeletePrefixRequest) (DeletePrefixResult, error) {
	return DeletePrefixResult{Meta: Meta{Revision: 44}}, nil
}
func (f *fixedBackend) Batch(context.Context, BatchRequest) (WriteResult, error) {
	return WriteResult{Meta: Meta{Revision: 45}}, nil
}
func (f *fixedBackend) Ready(context.Context) error { return nil }
func (f *fixedBackend) Meta() Meta                  { return Meta{Revision: 42} }
