package kv

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"unicode/utf8"
)

// CommandVersion is the version byte that starts every encoded command.
// A decoder refuses any other value: a newer command must never be applied
// by a replica that would misread it.
const CommandVersion = 1

// Hard bounds of the command format. Limits (configurable) may only be
// tighter.
const (
	// MaxKeyBytes bounds keys and prefixes (SPEC §2: 1 to 4096 bytes).
	MaxKeyBytes = 4096
	// MaxIdempotencyKeyBytes bounds an Idempotency-Key.
	MaxIdempotencyKeyBytes = 256
	// MaxValueBytesCeiling is the largest value any configuration accepts.
	MaxValueBytesCeiling = 64 << 20
	// MaxBatchOpsCeiling is the largest op count any configuration accepts.
	MaxBatchOpsCeiling = 1 << 20
)

// timestampOffset is where the leader's timestamp sits in an encoded
// command (after the version and kind bytes); StampTimestamp writes there.
const timestampOffset = 2

// headerBytes is version, kind, timestamp.
const headerBytes = timestampOffset + 8

// Kind says what a command or a batch op does.
type Kind uint8

const (
	kindInvalid Kind = iota
	// KindPut writes Key = Value.
	KindPut
	// KindDelete removes Key.
	KindDelete
	// KindDeletePrefix removes every key starting with Key (non-empty).
	KindDeletePrefix
	// KindBatch applies Ops all-or-nothing at one revision.
	KindBatch
	kindCount
)

func (k Kind) String() string {
	switch k {
	case KindPut:
		return "put"
	case KindDelete:
		return "delete"
	case KindDeletePrefix:
		return "delete-prefix"
	case KindBatch:
		return "batch"
	default:
		return fmt.Sprintf("Kind(%d)", uint8(k))
	}
}

// Cond is the precondition of a put or delete, checked at apply time.
type Cond uint8

const (
	// CondNone: unconditional.
	CondNone Cond = iota
	// CondIfMatch: the key must exist with revision Op.IfMatch
	// (HTTP If-Match). An absent key fails the condition.
	CondIfMatch
	// CondIfAbsent: the key must not exist (HTTP If-None-Match: *).
	// Only valid on puts.
	CondIfAbsent
	condCount
)

// Op is one put or delete (of a batch, or the single op of a put, delete
// or delete-prefix command). Key and Value alias the buffer they were
// decoded from.
type Op struct {
	Kind    Kind // KindPut or KindDelete (KindDeletePrefix only as Command.Op)
	Cond    Cond
	IfMatch uint64 // the revision required when Cond == CondIfMatch
	Key     []byte
	Value   []byte // puts only
}

// Fingerprint identifies a request for idempotency: a retry must carry the
// same fingerprint as the first attempt, a different request under the
// same Idempotency-Key a different one.
type Fingerprint [16]byte

// Command is the decoded payload of one raftmsg.EntryNormal.
type Command struct {
	Kind Kind
	// TimestampNs is the leader's clock (unix nanoseconds) when it appended
	// the entry (see StampTimestamp). Only idempotency expiry uses it.
	TimestampNs int64
	// IdempotencyKey is empty when the request carried none.
	IdempotencyKey []byte
	// Fingerprint is meaningful only with an IdempotencyKey.
	Fingerprint Fingerprint
	// Op is the operation of put, delete and delete-prefix (Key = prefix).
	Op Op
	// Ops are the operations of a batch, applied in order; keys distinct.
	Ops []Op
}

// NewPut returns a put command; cond and ifMatch as in Op.
func NewPut(key, value []byte, cond Cond, ifMatch uint64) Command {
	return Command{Kind: KindPut, Op: Op{Kind: KindPut, Cond: cond, IfMatch: ifMatch, Key: key, Value: value}}
}

// NewDelete returns a delete command (cond CondNone or CondIfMatch).
func NewDelete(key []byte, cond Cond, ifMatch uint64) Command {
	return Command{Kind: KindDelete, Op: Op{Kind: KindDelete, Cond: cond, IfMatch: ifMatch, Key: key}}
}

// NewDeletePrefix returns a command deleting every key under prefix.
func NewDeletePrefix(prefix []byte) Command {
	return Command{Kind: KindDeletePrefix, Op: Op{Kind: KindDeletePrefix, Key: prefix}}
}

// NewBatch returns an all-or-nothing batch of puts and deletes.
func NewBatch(ops []Op) Command { return Command{Kind: KindBatch, Ops: ops} }

// Limits are the configurable bounds enforced by the codec. Every member
// of a cluster must use the same Limits: a replica that refused to decode
// a committed command another one applied would diverge.
type Limits struct {
	MaxValueBytes int // default 1 MiB (SPEC --max-value-bytes)
	MaxBatchOps   int // default 10000 (SPEC --max-txn-ops)
}

// DefaultLimits are SPEC §1's defaults.
var DefaultLimits = Limits{MaxValueBytes: 1 << 20, MaxBatchOps: 10000}

func (l Limits) withDefaults() Limits {
	if l.MaxValueBytes <= 0 {
		l.MaxValueBytes = DefaultLimits.MaxValueBytes
	}
	if l.MaxBatchOps <= 0 {
		l.MaxBatchOps = DefaultLimits.MaxBatchOps
	}
	return l
}

func (l Limits) validate() error {
	if l.MaxValueBytes > MaxValueBytesCeiling {
		return fmt.Errorf("kv: max value bytes %d over the ceiling %d", l.MaxValueBytes, MaxValueBytesCeiling)
	}
	if l.MaxBatchOps > MaxBatchOpsCeiling {
		return fmt.Errorf("kv: max batch ops %d over the ceiling %d", l.MaxBatchOps, MaxBatchOpsCeiling)
	}
	return nil
}

// Errors of the codec. ErrTooLarge (HTTP 413) and ErrInvalid (HTTP 400)
// classify every error that AppendCommand, Validate and DecodeCommand
// return; errors.Is finds them through the wrapping.
var (
	ErrTooLarge = errors.New("too large")
	ErrInvalid  = errors.New("invalid command")
)

func invalidf(format string, args ...any) error {
	return fmt.Errorf("kv: "+format+": %w", append(args, ErrInvalid)...)
}

func tooLargef(format string, args ...any) error {
	return fmt.Errorf("kv: "+format+": %w", append(args, ErrTooLarge)...)
}

// ValidateKey checks a key against SPEC §2: 1..4096 bytes of UTF-8.
func ValidateKey(key []byte) error {
	if len(key) == 0 {
		return invalidf("empty key")
	}
	if len(key) > MaxKeyBytes {
		return tooLargef("key of %d bytes over %d", len(key), MaxKeyBytes)
	}
	if !utf8.Valid(key) {
		return invalidf("key is not UTF-8")
	}
	return nil
}

// validatePrefix accepts any non-empty byte string up to MaxKeyBytes: a
// prefix may end inside a multi-byte character of the keys it selects.
func validatePrefix(prefix []byte) error {
	if len(prefix) == 0 {
		return invalidf("empty prefix")
	}
	if len(prefix) > MaxKeyBytes {
		return tooLargef("prefix of %d bytes over %d", len(prefix), MaxKeyBytes)
	}
	return nil
}

func validateOp(op *Op, lim Limits) error {
	if err := ValidateKey(op.Key); err != nil {
		return err
	}
	switch op.Kind {
	case KindPut:
		if len(op.Value) > lim.MaxValueBytes {
			return tooLargef("value of %d bytes over %d", len(op.Value), lim.MaxValueBytes)
		}
	case KindDelete:
		if op.Cond == CondIfAbsent {
			return invalidf("if-absent on a delete")
		}
		if len(op.Value) != 0 {
			return invalidf("delete with a value")
		}
	default:
		return invalidf("op kind %v", op.Kind)
	}
	if op.Cond >= condCount {
		return invalidf("condition %d", op.Cond)
	}
	if op.Cond != CondIfMatch && op.IfMatch != 0 {
		return invalidf("if-match revision without the if-match condition")
	}
	return nil
}

// Validate checks every bound and rule of the format against lim. The
// proposer calls it (through AppendCommand) so that apply never meets a
// command it must refuse.
func (c *Command) Validate(lim Limits) error {
	lim = lim.withDefaults()
	if len(c.IdempotencyKey) > MaxIdempotencyKeyBytes {
		return tooLargef("idempotency key of %d bytes over %d", len(c.IdempotencyKey), MaxIdempotencyKeyBytes)
	}
	if len(c.IdempotencyKey) == 0 && c.Fingerprint != (Fingerprint{}) {
		return invalidf("fingerprint without an idempotency key")
	}
	switch c.Kind {
	case KindPut, KindDelete:
		if c.Op.Kind != c.Kind {
			return invalidf("op kind %v in a %v command", c.Op.Kind, c.Kind)
		}
		if len(c.Ops) != 0 {
			return invalidf("batch ops in a %v command", c.Kind)
		}
		return validateOp(&c.Op, lim)
	case KindDeletePrefix:
		if c.Op.Kind != KindDeletePrefix || c.Op.Cond != CondNone || c.Op.IfMatch != 0 || len(c.Op.Value) != 0 || len(c.Ops) != 0 {
			return invalidf("delete-prefix carries only a prefix")
		}
		return validatePrefix(c.Op.Key)
	case KindBatch:
		if c.Op.Kind != kindInvalid || len(c.Op.Key) != 0 || len(c.Op.Value) != 0 || c.Op.Cond != CondNone || c.Op.IfMatch != 0 {
			return invalidf("single op in a batch command")
		}
		if len(c.Ops) == 0 {
			return invalidf("empty batch")
		}
		if len(c.Ops) > lim.MaxBatchOps {
			return tooLargef("batch of %d ops over %d", len(c.Ops), lim.MaxBatchOps)
		}
		for i := range c.Ops {
			if err := validateOp(&c.Ops[i], lim); err != nil {
				return fmt.Errorf("op %d: %w", i, err)
			}
		}
		return checkDistinctKeys(c.Ops)
	default:
		return invalidf("command kind %v", c.Kind)
	}
}

// checkDistinctKeys refuses a batch naming a key twice (as etcd refuses a
// txn that does): with distinct keys every condition and the quota delta
// are computed against the state before the batch, with no order effects.
func checkDistinctKeys(ops []Op) error {
	const quadraticMax = 16 // below this, comparing pairs beats a map
	if len(ops) <= quadraticMax {
		for i := range ops {
			for j := i + 1; j < len(ops); j++ {
				if string(ops[i].Key) == string(ops[j].Key) {
					return invalidf("ops %d and %d name the same key", i, j)
				}
			}
		}
		return nil
	}
	seen := make(map[string]int, len(ops))
	for i := range ops {
		if j, dup := seen[string(ops[i].Key)]; dup {
			return invalidf("ops %d and %d name the same key", j, i)
		}
		seen[string(ops[i].Key)] = i
	}
	return nil
}

// AppendCommand validates c against lim and appends its encoding to dst.
func AppendCommand(dst []byte, c *Command, lim Limits) ([]byte, error) {
	if err := c.Validate(lim); err != nil {
		return dst, err
	}
	// One allocation for the whole command: a batch of 100 puts grew its
	// buffer a dozen times, copying the values at each step.
	dst = slices.Grow(dst, c.encodedBytesBound())
	dst = append(dst, CommandVersion, byte(c.Kind))
	dst = binary.LittleEndian.AppendUint64(dst, uint64(c.TimestampNs))
	dst = binary.AppendUvarint(dst, uint64(len(c.IdempotencyKey)))
	if len(c.IdempotencyKey) > 0 {
		dst = append(dst, c.IdempotencyKey...)
		dst = append(dst, c.Fingerprint[:]...)
	}
	return appendBody(dst, c), nil
}

// appendBody encodes everything after the idempotency fields; it is also
// the input of ComputeFingerprint.
func appendBody(dst []byte, c *Command) []byte {
	switch c.Kind {
	case KindPut, KindDelete:
		dst = appendOp(dst, &c.Op, false)
	case KindDeletePrefix:
		dst = binary.AppendUvarint(dst, uint64(len(c.Op.Key)))
		dst = append(dst, c.Op.Key...)
	case KindBatch:
		dst = binary.AppendUvarint(dst, uint64(len(c.Ops)))
		for i := range c.Ops {
			dst = appendOp(dst, &c.Ops[i], true)
		}
	}
	return dst
}

// encodedBytesBound is at least what AppendCommand appends for c.
func (c *Command) encodedBytesBound() int {
	const header = 2 + 8 + binary.MaxVarintLen64 + len(Fingerprint{})
	const perOp = 2 + 8 + 2*binary.MaxVarintLen64
	n := header + len(c.IdempotencyKey) + binary.MaxVarintLen64 + perOp + len(c.Op.Key) + len(c.Op.Value)
	for i := range c.Ops {
		n += perOp + len(c.Ops[i].Key) + len(c.Ops[i].Value)
	}
	return n
}

func appendOp(dst []byte, op *Op, withKind bool) []byte {
	if withKind {
		dst = append(dst, byte(op.Kind))
	}
	dst = append(dst, byte(op.Cond))
	if op.Cond == CondIfMatch {
		dst = binary.LittleEndian.AppendUint64(dst, op.IfMatch)
	}
	dst = binary.AppendUvarint(dst, uint64(len(op.Key)))
	dst = append(dst, op.Key...)
	if op.Kind == KindPut {
		dst = binary.AppendUvarint(dst, uint64(len(op.Value)))
		dst = append(dst, op.Value...)
	}
	return dst
}

// ComputeFingerprint digests what the command does (kind, keys, values,
// conditions), not when or under which idempotency key: a retry of the
// same request gets the same fingerprint on any node, in any process.
func (c *Command) ComputeFingerprint() Fingerprint {
	var buf [256]byte
	body := appendBody(append(buf[:0], byte(c.Kind)), c)
	sum := sha256.Sum256(body)
	var fp Fingerprint
	copy(fp[:], sum[:])
	return fp
}

// StampTimestamp overwrites the leader timestamp of an encoded command in
// place. The leader calls it just before appending the entry, so the
// idempotency clock is the leader's, whoever encoded the command.
func StampTimestamp(data []byte, unixNs int64) error {
	if len(data) < headerBytes || data[0] != CommandVersion {
		return invalidf("stamp: not an encoded command")
	}
	binary.LittleEndian.PutUint64(data[timestampOffset:], uint64(unixNs))
	return nil
}

// decoder reads an encoded command; every read checks what remains.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(err error) {
	if d.err == nil {
		d.err = err
	}
	d.b = nil
}

func (d *decoder) byte1(what string) byte {
	if len(d.b) < 1 {
		d.fail(invalidf("truncated at %s", what))
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *decoder) uint64le(what string) uint64 {
	if len(d.b) < 8 {
		d.fail(invalidf("truncated at %s", what))
		return 0
	}
	v := binary.LittleEndian.Uint64(d.b)
	d.b = d.b[8:]
	return v
}

// bytesN reads a uvarint length, refuses it above maxBytes before taking
// anything, and returns the bytes aliasing the input.
func (d *decoder) bytesN(what string, maxBytes int) []byte {
	n, used := binary.Uvarint(d.b)
	if used <= 0 {
		d.fail(invalidf("bad length of %s", what))
		return nil
	}
	d.b = d.b[used:]
	if n > uint64(maxBytes) {
		d.fail(tooLargef("%s of %d bytes over %d", what, n, maxBytes))
		return nil
	}
	if n > uint64(len(d.b)) {
		d.fail(invalidf("truncated %s", what))
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) op(op *Op, kind Kind, lim Limits) {
	op.Kind = kind
	op.Cond = Cond(d.byte1("condition"))
	op.IfMatch = 0
	if op.Cond == CondIfMatch {
		op.IfMatch = d.uint64le("if-match revision")
	}
	op.Key = d.bytesN("key", MaxKeyBytes)
	op.Value = nil
	if kind == KindPut {
		op.Value = d.bytesN("value", lim.MaxValueBytes)
	}
}

// DecodeCommand decodes data into c, reusing c.Ops' capacity. Key, Value
// and IdempotencyKey alias data: copy them before data is reused. Bad
// bytes give an error wrapping ErrInvalid or ErrTooLarge, never a panic.
func DecodeCommand(data []byte, lim Limits, c *Command) error {
	lim = lim.withDefaults()
	ops := c.Ops[:0]
	*c = Command{Ops: ops}
	d := decoder{b: data}
	if v := d.byte1("version"); d.err == nil && v != CommandVersion {
		return invalidf("command version %d, want %d", v, CommandVersion)
	}
	c.Kind = Kind(d.byte1("kind"))
	c.TimestampNs = int64(d.uint64le("timestamp"))
	c.IdempotencyKey = d.bytesN("idempotency key", MaxIdempotencyKeyBytes)
	if len(c.IdempotencyKey) == 0 {
		c.IdempotencyKey = nil
	} else if len(d.b) < len(c.Fingerprint) {
		d.fail(invalidf("truncated fingerprint"))
	} else {
		copy(c.Fingerprint[:], d.b)
		d.b = d.b[len(c.Fingerprint):]
	}
	if d.err != nil {
		return d.err
	}
	switch c.Kind {
	case KindPut, KindDelete:
		d.op(&c.Op, c.Kind, lim)
	case KindDeletePrefix:
		c.Op.Kind = KindDeletePrefix
		c.Op.Key = d.bytesN("prefix", MaxKeyBytes)
	case KindBatch:
		n, used := binary.Uvarint(d.b)
		if used <= 0 {
			return invalidf("bad batch op count")
		}
		d.b = d.b[used:]
		if n > uint64(lim.MaxBatchOps) {
			return tooLargef("batch of %d ops over %d", n, lim.MaxBatchOps)
		}
		// Each op takes at least 3 bytes (kind, condition, key length):
		// refuse a count the data cannot hold before allocating for it.
		if n > uint64(len(d.b))/3 {
			return invalidf("batch of %d ops in %d bytes", n, len(d.b))
		}
		if cap(ops) < int(n) {
			ops = make([]Op, 0, n)
		}
		ops = ops[:n]
		for i := range ops {
			kind := Kind(d.byte1("op kind"))
			if kind != KindPut && kind != KindDelete {
				d.fail(invalidf("op %d kind %v", i, kind))
				break
			}
			d.op(&ops[i], kind, lim)
		}
		c.Ops = ops
	default:
		return invalidf("command kind %v", c.Kind)
	}
	if d.err != nil {
		return d.err
	}
	if len(d.b) != 0 {
		return invalidf("%d trailing bytes", len(d.b))
	}
	return c.Validate(lim)
}
