package kv

import (
	"fmt"
	"testing"
	"time"

	"github.com/edgekv/edgekv/consensus/raftmsg"
)

func cmdPut(key, value string) *Command {
	c := NewPut([]byte(key), []byte(value), CondNone, 0)
	return &c
}

func cmdPutIfMatch(key, value string, rev uint64) *Command {
	c := NewPut([]byte(key), []byte(value), CondIfMatch, rev)
	return &c
}

func cmdPutIfAbsent(key, value string) *Command {
	c := NewPut([]byte(key), []byte(value), CondIfAbsent, 0)
	return &c
}

func cmdDel(key string) *Command {
	c := NewDelete([]byte(key), CondNone, 0)
	return &c
}

func cmdDelIfMatch(key string, rev uint64) *Command {
	c := NewDelete([]byte(key), CondIfMatch, rev)
	return &c
}

func cmdDelPrefix(prefix string) *Command {
	c := NewDeletePrefix([]byte(prefix))
	return &c
}

func cmdBatch(ops ...Op) *Command {
	c := NewBatch(ops)
	return &c
}

func opPut(key, value string) Op {
	return Op{Kind: KindPut, Key: []byte(key), Value: []byte(value)}
}

func opPutIf(key, value string, cond Cond, rev uint64) Op {
	return Op{Kind: KindPut, Key: []byte(key), Value: []byte(value), Cond: cond, IfMatch: rev}
}

func opDel(key string) Op { return Op{Kind: KindDelete, Key: []byte(key)} }

func opDelIfMatch(key string, rev uint64) Op {
	return Op{Kind: KindDelete, Key: []byte(key), Cond: CondIfMatch, IfMatch: rev}
}

// withIdem gives c an idempotency key and its computed fingerprint.
func withIdem(c *Command, key string) *Command {
	c.IdempotencyKey = []byte(key)
	c.Fingerprint = c.ComputeFingerprint()
	return c
}

func at(c *Command, ts time.Duration) *Command {
	c.TimestampNs = int64(ts)
	return c
}

func mustEncode(t testing.TB, c *Command) []byte {
	t.Helper()
	return mustEncodeLimits(t, c, Limits{})
}

func mustEncodeLimits(t testing.TB, c *Command, lim Limits) []byte {
	t.Helper()
	b, err := AppendCommand(nil, c, lim)
	if err != nil {
		t.Fatalf("encode %v of key %.40q: %v", c.Kind, c.Op.Key, err)
	}
	return b
}

// harness applies commands one entry at a time and checks the machine's
// invariants after each.
type harness struct {
	t testing.TB
	m *Machine
}

func newHarness(t testing.TB, cfg Config) *harness {
	t.Helper()
	m, err := NewMachine(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &harness{t: t, m: m}
}

func (h *harness) apply(c *Command) Result {
	h.t.Helper()
	return h.applyData(mustEncodeLimits(h.t, c, h.m.Config().Limits))
}

func (h *harness) applyData(data []byte) Result {
	h.t.Helper()
	idx := h.m.AppliedIndex() + 1
	res, err := h.m.ApplyEntries([]raftmsg.Entry{{Term: 1, Index: idx, Type: raftmsg.EntryNormal, RequestID: idx * 7, Data: data}}, nil)
	if err != nil {
		h.t.Fatal(err)
	}
	if len(res) != 1 || res[0].Index != idx || res[0].RequestID != idx*7 {
		h.t.Fatalf("results %+v for entry %d", res, idx)
	}
	if err := checkInvariants(h.m); err != nil {
		h.t.Fatal(err)
	}
	return res[0]
}

func (h *harness) get(key string) (string, uint64, bool) {
	v, rev, ok := h.m.View().Get(key)
	return string(v), rev, ok
}

// checkInvariants recomputes what the machine tracks incrementally.
func checkInvariants(m *Machine) error {
	st := &m.st
	var size uint64
	var err error
	st.tree.Scan(func(it item) bool {
		size += itemSize(int(it.keyBytes), int(it.valueBytes))
		if it.rev == 0 || it.rev > st.revision {
			err = fmt.Errorf("key %q revision %d outside [1, %d]", it.key(), it.rev, st.revision)
		}
		return err == nil
	})
	if err != nil {
		return err
	}
	if size != st.sizeBytes {
		return fmt.Errorf("size %d, tracked %d", size, st.sizeBytes)
	}
	if st.idemByKey.Len() != st.idemBySeq.Len() {
		return fmt.Errorf("idempotency indexes hold %d and %d records", st.idemByKey.Len(), st.idemBySeq.Len())
	}
	if st.idemBySeq.Len() > m.cfg.IdempotencyMaxKeys {
		return fmt.Errorf("%d idempotency records over the bound %d", st.idemBySeq.Len(), m.cfg.IdempotencyMaxKeys)
	}
	st.idemBySeq.Scan(func(r *idemRecord) bool {
		if other, ok := st.idemByKey.Get(r); !ok || other != r {
			err = fmt.Errorf("idempotency record %q not in the key index", r.key)
		}
		return err == nil
	})
	if err != nil {
		return err
	}
	v := m.View()
	if v.Revision() != st.revision || v.AppliedIndex() != st.applied || v.SizeBytes() != st.sizeBytes || v.Len() != st.tree.Len() {
		return fmt.Errorf("published view (rev %d, applied %d) differs from state (rev %d, applied %d)",
			v.Revision(), v.AppliedIndex(), st.revision, st.applied)
	}
	return nil
}
