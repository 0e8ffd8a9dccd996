// Package codec encodes batches of Raft messages and request-forwarding
// records into the payload of one wire record, and decodes them without
// copying: decoded entry data and forwarded payloads are slices of the
// payload buffer.
//
// Batch payload (all integers little-endian, fixed width):
//
//	+-----------+-----------------------------------------------+
//	| count u32 | count × ( kind u8 | body )                    |
//	+-----------+-----------------------------------------------+
//
//	kind 1, Raft message:
//	+---------+----------+-----------+----------------------------------------+
//	| type u8 | flags u8 | reason u8 | from to term logTerm index commit      |
//	|         | (bit0:   | (Reject-  | rejectHint context hint: 9 × u64       |
//	|         |  reject) |  Reason)  |                                        |
//	+---------+----------+-----------+----------------------------------------+
//	| snapshot: index u64 | term u64 | nVoters u32 | voters u64... |          |
//	|           nLearners u32 | learners u64...                               |
//	+-------------------------------------------------------------------------+
//	| nEntries u32 | nEntries × ( term u64 | index u64 | type u8 |            |
//	|                 requestID u64 | origin u64 | dataLen u32 | data )        |
//	+-------------------------------------------------------------------------+
//
//	kind 2, forwarded request:  | op u8 | requestID u64 | len u32 | payload |
//	kind 3, forwarded outcome:  | status u8 | requestID u64 | revision u64 |
//	                            | len u32 | body |
//
// Every count and length is checked against the bytes that remain before
// anything is sized from it, so a payload of n bytes never makes the
// decoder allocate more than a small multiple of n.
//
// The package must never copy entry data on decode, never panic on input,
// and never allocate in steady state (slabs are reused across batches).
package codec

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"

	"github.com/edgekv/edgekv/consensus/raftmsg"
	"github.com/edgekv/edgekv/zerocopy"
)

type recordKind uint8

const (
	kindRaft recordKind = iota + 1
	kindForwardRequest
	kindForwardOutcome
)

const (
	countBytes          = 4
	messageFixedBytes   = 3 + 9*8 + 2*8 + 4 + 4 + 4 // without ids and entries
	entryHeaderBytes    = 8 + 8 + 1 + 8 + 8 + 4
	forwardRequestBytes = 1 + 8 + 4
	forwardOutcomeBytes = 1 + 8 + 8 + 4
	minRecordBytes      = 1 + min(messageFixedBytes, forwardRequestBytes, forwardOutcomeBytes)
)

// ForwardOp says what a forwarded request asks the leader to do.
type ForwardOp uint8

const (
	// ForwardPropose: propose Payload (an opaque command) and answer when
	// it is applied.
	ForwardPropose ForwardOp = iota + 1
	// ForwardReadIndex: confirm leadership and answer with the read index
	// (thesis §6.4) in Outcome.Revision.
	ForwardReadIndex
	forwardOpCount
)

// ForwardRequest is a client request a follower forwards to the leader.
type ForwardRequest struct {
	Op        ForwardOp
	RequestID uint64
	// Payload points into the receive buffer on decode: valid until the
	// batch is released.
	Payload []byte
}

// Status is the outcome of a forwarded request.
type Status uint8

const (
	// StatusUnknown: the outcome is not known (it may still commit).
	StatusUnknown Status = iota
	// StatusCommitted: applied at Revision (or, for a read, read index).
	StatusCommitted
	// StatusConditionFailed: a precondition did not hold when applied.
	StatusConditionFailed
	// StatusOverloaded: the leader's queues are full.
	StatusOverloaded
	// StatusQuotaExceeded: the store is full.
	StatusQuotaExceeded
	statusCount
)

func (s Status) String() string {
	switch s {
	case StatusUnknown:
		return "unknown"
	case StatusCommitted:
		return "committed"
	case StatusConditionFailed:
		return "condition_failed"
	case StatusOverloaded:
		return "overloaded"
	case StatusQuotaExceeded:
		return "quota_exceeded"
	}
	return fmt.Sprintf("status(%d)", uint8(s))
}

// Outcome is the leader's answer to a forwarded request.
type Outcome struct {
	RequestID uint64
	Status    Status
	Revision  uint64
	// Body is opaque to the transport (for example the indexes of failed
	// batch conditions). On decode it points into the receive buffer.
	Body []byte
}

// ErrMalformed wraps every decoding failure.
var ErrMalformed = errors.New("codec: malformed batch")

// Encoder builds one batch payload. Reuse it: Reset keeps its buffers.
//
// With RefMinBytes > 0, entry data of at least that many bytes is not
// copied into the encoder but referenced: the payload is then the
// sequence of Segments (inline bytes and the entries' own slices), which a
// vectored write sends without ever concatenating them. Bytes still
// returns the whole payload, copying when references exist.
type Encoder struct {
	// RefMinBytes: entry data this large or larger is referenced, not
	// copied (0: always copy).
	RefMinBytes int

	buf   []byte
	count uint32
	refs  []ref    // referenced data, in payload order
	segs  [][]byte // Segments' result, reused
	whole []byte   // Bytes' result when refs exist, reused
	refN  int      // bytes referenced
}

// ref is referenced data placed after buf[:at].
type ref struct {
	at   int
	data []byte
}

// Reset empties the encoder, keeping its capacity.
func (e *Encoder) Reset() {
	e.buf = append(e.buf[:0], 0, 0, 0, 0)
	e.count = 0
	clear(e.refs) // do not pin the caller's entries
	e.refs = e.refs[:0]
	e.refN = 0
}

// Len is the size of the payload so far.
func (e *Encoder) Len() int { return len(e.buf) + e.refN }

// Count is the number of records added since Reset.
func (e *Encoder) Count() int { return int(e.count) }

func (e *Encoder) patchCount() {
	if len(e.buf) < countBytes {
		e.Reset()
	}
	binary.LittleEndian.PutUint32(e.buf, e.count)
}

// Segments returns the payload as slices to be written in order (inline
// bytes and referenced entry data), valid until the next call on e.
func (e *Encoder) Segments() [][]byte {
	e.patchCount()
	e.segs = e.segs[:0]
	prev := 0
	for _, r := range e.refs {
		if r.at > prev {
			e.segs = append(e.segs, e.buf[prev:r.at])
		}
		e.segs = append(e.segs, r.data)
		prev = r.at
	}
	if len(e.buf) > prev {
		e.segs = append(e.segs, e.buf[prev:])
	}
	return e.segs
}

// Bytes returns the payload in one slice, valid until the next call on e.
func (e *Encoder) Bytes() []byte {
	e.patchCount()
	if len(e.refs) == 0 {
		return e.buf
	}
	e.whole = e.whole[:0]
	for _, s := range e.Segments() {
		e.whole = append(e.whole, s...)
	}
	return e.whole
}

func (e *Encoder) begin(k recordKind) {
	if len(e.buf) < countBytes {
		e.Reset()
	}
	e.count++
	e.buf = append(e.buf, byte(k))
}

// MessageBytes is the encoded size of m.
func MessageBytes(m *raftmsg.Message) int {
	n := 1 + messageFixedBytes + 8*(len(m.Snapshot.Conf.Voters)+len(m.Snapshot.Conf.Learners))
	for i := range m.Entries {
		n += entryHeaderBytes + len(m.Entries[i].Data)
	}
	return n
}

// AddMessage appends m.
func (e *Encoder) AddMessage(m *raftmsg.Message) {
	e.begin(kindRaft)
	var flags byte
	if m.Reject {
		flags |= 1
	}
	b := append(e.buf, byte(m.Type), flags, byte(m.RejectReason))
	for _, v := range [...]uint64{uint64(m.From), uint64(m.To), m.Term, m.LogTerm, m.Index, m.Commit,
		m.RejectHint, m.Context, uint64(m.Hint), m.Snapshot.Index, m.Snapshot.Term} {
		b = binary.LittleEndian.AppendUint64(b, v)
	}
	b = appendIDs(b, m.Snapshot.Conf.Voters)
	b = appendIDs(b, m.Snapshot.Conf.Learners)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(m.Entries)))
	for i := range m.Entries {
		en := &m.Entries[i]
		b = binary.LittleEndian.AppendUint64(b, en.Term)
		b = binary.LittleEndian.AppendUint64(b, en.Index)
		b = append(b, byte(en.Type))
		b = binary.LittleEndian.AppendUint64(b, en.RequestID)
		b = binary.LittleEndian.AppendUint64(b, uint64(en.Origin))
		b = binary.LittleEndian.AppendUint32(b, uint32(len(en.Data)))
		if e.RefMinBytes > 0 && len(en.Data) >= e.RefMinBytes {
			e.refs = append(e.refs, ref{at: len(b), data: en.Data})
			e.refN += len(en.Data)
			continue
		}
		b = append(b, en.Data...)
	}
	e.buf = b
}

func appendIDs(b []byte, ids []raftmsg.NodeID) []byte {
	b = binary.LittleEndian.AppendUint32(b, uint32(len(ids)))
	for _, id := range ids {
		b = binary.LittleEndian.AppendUint64(b, uint64(id))
	}
	return b
}

// ForwardRequestBytes is the encoded size of r.
func ForwardRequestBytes(r *ForwardRequest) int { return 1 + forwardRequestBytes + len(r.Payload) }

// AddForwardRequest appends r.
func (e *Encoder) AddForwardRequest(r *ForwardRequest) {
	e.begin(kindForwardRequest)
	b := append(e.buf, byte(r.Op))
	b = binary.LittleEndian.AppendUint64(b, r.RequestID)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(r.Payload)))
	e.buf = append(b, r.Payload...)
}

// OutcomeBytes is the encoded size of o.
func OutcomeBytes(o *Outcome) int { return 1 + forwardOutcomeBytes + len(o.Body) }

// AddOutcome appends o.
func (e *Encoder) AddOutcome(o *Outcome) {
	e.begin(kindForwardOutcome)
	b := append(e.buf, byte(o.Status))
	b = binary.LittleEndian.AppendUint64(b, o.RequestID)
	b = binary.LittleEndian.AppendUint64(b, o.Revision)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(o.Body)))
	e.buf = append(b, o.Body...)
}

// Batch is a decoded batch. Messages' entry data, forwarded payloads and
// outcome bodies point into the buffer the batch was decoded from.
//
// Lifetime rule: the receiver of a *Batch owns it and must call Release
// exactly once when done; after Release no slice reachable from the batch
// may be used (copy what must outlive it, as the Raft log does when it
// stores entries).
type Batch struct {
	// From is the peer that sent the batch (set by the transport).
	From     raftmsg.NodeID
	Messages []raftmsg.Message
	Forwards []ForwardRequest
	Outcomes []Outcome
	entries  []raftmsg.Entry
	ids      []raftmsg.NodeID
	buf      *zerocopy.Buffer
	pool     *BatchPool
	released bool
}

// BatchPool recycles Batch values and their slabs so that steady-state
// decoding allocates nothing.
type BatchPool struct{ p sync.Pool }

// Get returns an empty batch owned by the caller.
func (bp *BatchPool) Get() *Batch {
	if b, ok := bp.p.Get().(*Batch); ok {
		b.released = false
		return b
	}
	return &Batch{pool: bp}
}

// Release gives the batch, and the buffer it points into, back.
func (b *Batch) Release() {
	if b.released {
		panic("codec: batch released twice")
	}
	b.released = true
	if b.buf != nil {
		b.buf.Release()
		b.buf = nil
	}
	b.reset()
	if b.pool != nil {
		b.pool.p.Put(b)
	}
}

func (b *Batch) reset() {
	b.From = 0
	clear(b.Messages) // drop references into the released buffer
	clear(b.entries)
	clear(b.Forwards)
	clear(b.Outcomes)
	b.Messages, b.entries, b.ids = b.Messages[:0], b.entries[:0], b.ids[:0]
	b.Forwards, b.Outcomes = b.Forwards[:0], b.Outcomes[:0]
}

// DecodeBuffer decodes buf's bytes into b, which takes ownership of buf
// (released with the batch, also on error).
func (b *Batch) DecodeBuffer(buf *zerocopy.Buffer) error {
	b.buf = buf
	return b.Decode(buf.Bytes())
}

// Decode decodes payload into b; the batch points into payload.
func (b *Batch) Decode(payload []byte) error {
	b.reset()
	d := decoder{b: payload}
	count := d.u32()
	if d.err != nil {
		return d.err
	}
	if uint64(count)*minRecordBytes > uint64(len(d.b)) {
		return fmt.Errorf("%w: %d records in %d bytes", ErrMalformed, count, len(d.b))
	}
	for i := uint32(0); i < count && d.err == nil; i++ {
		switch k := recordKind(d.u8()); k {
		case kindRaft:
			b.decodeMessage(&d)
		case kindForwardRequest:
			r := ForwardRequest{Op: ForwardOp(d.u8()), RequestID: d.u64()}
			r.Payload = d.bytes()
			if d.err == nil && (r.Op == 0 || r.Op >= forwardOpCount) {
				d.fail("unknown forward op %d", r.Op)
			}
			b.Forwards = append(b.Forwards, r)
		case kindForwardOutcome:
			o := Outcome{Status: Status(d.u8()), RequestID: d.u64(), Revision: d.u64()}
			o.Body = d.bytes()
			if d.err == nil && o.Status >= statusCount {
				d.fail("unknown status %d", o.Status)
			}
			b.Outcomes = append(b.Outcomes, o)
		default:
			if d.err == nil {
				d.fail("unknown record kind %d", k)
			}
		}
	}
	if d.err == nil && len(d.b) != 0 {
		d.fail("%d trailing bytes", len(d.b))
	}
	return d.err
}

func (b *Batch) decodeMessage(d *decoder) {
	m := raftmsg.Message{Type: raftmsg.MessageType(d.u8())}
	flags := d.u8()
	m.RejectReason = raftmsg.RejectReason(d.u8())
	m.Reject = flags&1 != 0
	m.From, m.To = raftmsg.NodeID(d.u64()), raftmsg.NodeID(d.u64())
	m.Term, m.LogTerm, m.Index, m.Commit = d.u64(), d.u64(), d.u64(), d.u64()
	m.RejectHint, m.Context, m.Hint = d.u64(), d.u64(), raftmsg.NodeID(d.u64())
	m.Snapshot.Index, m.Snapshot.Term = d.u64(), d.u64()
	m.Snapshot.Conf.Voters = b.decodeIDs(d)
	m.Snapshot.Conf.Learners = b.decodeIDs(d)
	switch {
	case d.err != nil:
		return
	case !m.Type.Valid():
		d.fail("unknown message type %d", m.Type)
		return
	case flags&^1 != 0:
		d.fail("unknown message flags %#x", flags)
		return
	case !m.RejectReason.Valid():
		d.fail("unknown reject reason %d", m.RejectReason)
		return
	}
	n := d.u32()
	if d.err == nil && uint64(n)*entryHeaderBytes > uint64(len(d.b)) {
		d.fail("%d entries in %d bytes", n, len(d.b))
	}
	if d.err != nil {
		return
	}
	if n > 0 {
		start := len(b.entries)
		for range n {
			en := raftmsg.Entry{Term: d.u64(), Index: d.u64(), Type: raftmsg.EntryType(d.u8()), RequestID: d.u64(), Origin: raftmsg.NodeID(d.u64())}
			en.Data = d.bytes()
			if d.err != nil {
				return
			}
			b.entries = append(b.entries, en)
		}
		// Full slice expression: appending to one message's entries must
		// never overwrite the next message's.
		m.Entries = b.entries[start:len(b.entries):len(b.entries)]
	}
	b.Messages = append(b.Messages, m)
}

func (b *Batch) decodeIDs(d *decoder) []raftmsg.NodeID {
	n := d.u32()
	if d.err == nil && uint64(n)*8 > uint64(len(d.b)) {
		d.fail("%d node ids in %d bytes", n, len(d.b))
	}
	if d.err != nil || n == 0 {
		return nil
	}
	start := len(b.ids)
	for range n {
		b.ids = append(b.ids, raftmsg.NodeID(d.u64()))
	}
	return b.ids[start:len(b.ids):len(b.ids)]
}

// decoder reads fixed-width fields; after the first error every read
// returns zero and the error sticks.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: "+format, append([]any{ErrMalformed}, args...)...)
	}
}

func (d *decoder) need(n int) bool {
	if d.err != nil {
		return false
	}
	if len(d.b) < n {
		d.fail("need %d bytes, %d left", n, len(d.b))
		return false
	}
	return true
}

func (d *decoder) u8() uint8 {
	if !d.need(1) {
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *decoder) u32() uint32 {
	if !d.need(4) {
		return 0
	}
	v := binary.LittleEndian.Uint32(d.b)
	d.b = d.b[4:]
	return v
}

func (d *decoder) u64() uint64 {
	if !d.need(8) {
		return 0
	}
	v := binary.LittleEndian.Uint64(d.b)
	d.b = d.b[8:]
	return v
}

// bytes reads a u32 length and that many bytes, returning a slice of the
// payload (nil when empty) whose capacity ends at its length.
func (d *decoder) bytes() []byte {
	n := d.u32()
	if d.err != nil || !d.need(int(min(uint64(n), uint64(len(d.b))+1))) {
		return nil
	}
	if n == 0 {
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}
