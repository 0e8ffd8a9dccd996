// Package kv is edgekv's key-value state machine: the commands that travel
// inside Raft entries and their binary encoding, the single-writer apply
// of committed entries, immutable views for readers, the quota, the
// idempotency table, and the snapshot format.
//
// It must never do I/O of its own, read a clock, start a goroutine, or
// decide anything from local state that another replica could see
// differently: applying the same entries to the same snapshot gives the
// same results and the same bytes on every member. Compression, files,
// fsync and Raft snapshot metadata belong to the storage layer.
//
// # Semantics
//
// Keys are 1..4096 bytes of UTF-8 held in one ordered tree. The store
// revision counts the applied writes that changed data: a put, a delete of
// a present key, a delete-prefix that matched at least one key, a batch
// that put something or deleted a present key — each adds exactly one,
// whatever the number of keys touched. A key's revision is the store
// revision of its last write; it is the ETag and what If-Match compares.
// Everything else leaves the revision alone, as etcd does: failed
// conditions, quota refusals, idempotency replays and conflicts, deletes
// of absent keys, delete-prefix matching nothing, a batch deleting only
// absent keys, undecodable entries, and non-KV entries (no-ops, conf
// changes), which only move the applied index.
//
// Every condition is checked at apply time, against the state left by
// the entries before it:
//
//   - put: CondIfMatch requires the key present at that revision (an absent
//     key fails); CondIfAbsent requires it absent.
//   - delete: CondIfMatch as above; without a condition an absent key gives
//     StatusNotFound (with CondIfMatch it gives StatusPreconditionFailed).
//   - delete-prefix: removes every key starting with the (non-empty)
//     prefix, atomically; Result.Deleted counts them.
//   - batch: keys are distinct (a repeated key is refused when encoding).
//     Every op's condition is checked against the state before the batch;
//     if any fails, nothing is applied and Result.Failed lists the failed
//     op indexes. A delete of an absent key inside a batch is not an error.
//     Otherwise every op is applied at one new revision.
//
// Quota: the store size is the sum over keys of len(key) + len(value) +
// PerKeyOverheadBytes. A write whose size growth is positive and would take
// the size over Config.QuotaBytes gets StatusQuotaExceeded and changes
// nothing; writes that do not grow the store (deletes, shrinking puts,
// batches with a net shrink) always pass.
//
// Idempotency: a command may carry an idempotency key (≤ 256 bytes) and a
// Fingerprint of the request (Command.ComputeFingerprint). The table is part
// of the replicated state. If the key is remembered and live, the same
// fingerprint gets the remembered first outcome (Result.Replayed, nothing
// applied, the first revision) and a different one gets
// StatusIdempotencyConflict. Otherwise the command applies and its outcome
// is remembered if it is final: OK, precondition failed and not found are;
// quota exceeded is not (the client retries once space is freed; nothing
// was applied) and neither is an invalid entry. The clock is the leader's:
// each command carries the leader's unix-nanosecond timestamp
// (StampTimestamp), and the machine's clock is the running maximum of
// them, so a new leader whose clock lags never shortens a TTL. A record
// made at clock t is forgotten once the clock reaches t + IdempotencyTTL;
// when more than IdempotencyMaxKeys are remembered the oldest are
// forgotten first. A replay of a batch's 412 returns at most
// MaxRememberedFailed failed indexes (FailedCount is exact).
//
// Every member must run with the same Config: quota, TTL, key bound and
// Limits decide outcomes, and members that decided differently would
// diverge. The runtime should refuse to join members whose settings
// differ.
//
// # API
//
// The runtime owns one Machine and calls it from one goroutine (the apply
// loop); readers on any goroutine call View and never block it. The
// machine has no notification of its own: a linearizable read waits (on
// the runtime's signal after each ApplyEntries) until
// View().AppliedIndex() reaches its read index, then reads that view.
//
//	NewMachine(Config) (*Machine, error)       empty store, revision 0, applied 0, view published
//	(*Machine).ApplyEntries(ents []raftmsg.Entry, results []Result) ([]Result, error)
//	                                           apply committed entries in order; one Result per
//	                                           EntryNormal (Index, RequestID echoed); no-ops and
//	                                           conf changes only move the applied index; publishes
//	                                           one view at the end; error (nothing of that entry
//	                                           applied) if an index is not AppliedIndex()+1
//	(*Machine).ApplyCommand(index, requestID, data) (Result, error)   one EntryNormal, no publish
//	(*Machine).SkipIndex(index) error          one non-KV entry, no publish
//	(*Machine).Publish() *View                 make the current state the published view
//	(*Machine).View() *View                    latest published view; any goroutine, lock-free
//	(*Machine).AppliedIndex() uint64           last applied or skipped index (apply goroutine)
//	(*Machine).Restore(io.Reader) error        replace the state by a snapshot, publish it;
//	                                           on error nothing changes
//	(*Machine).Config() Config                 effective settings
//
//	(*View).Get(key string) (value []byte, revision uint64, found bool)   no allocation
//	(*View).GetBytes(key []byte) (...)         same, for a key in a byte slice
//	(*View).Range(prefix, after string, limit int, dst []Item) ([]Item, bool)
//	                                           keys with prefix, strictly after `after`, in
//	                                           order, at most limit (0: 100, capped at 1000),
//	                                           appended to dst; the bool says more follow
//	(*View).Revision(), AppliedIndex(), Len(), SizeBytes(), IdempotencyKeys(), LastTimestampNs()
//	(*View).WriteSnapshot(io.Writer) error     serialize this view (apply continues meanwhile)
//
//	NewPut(key, value, cond, ifMatch), NewDelete(key, cond, ifMatch), NewDeletePrefix(prefix),
//	NewBatch(ops) Command                      build commands (Op{Kind, Cond, IfMatch, Key, Value})
//	AppendCommand(dst []byte, c *Command, lim Limits) ([]byte, error)   validate and encode
//	DecodeCommand(data []byte, lim Limits, c *Command) error            decode and validate
//	(*Command).Validate(Limits) error, (*Command).ComputeFingerprint() Fingerprint
//	StampTimestamp(data []byte, unixNs int64) error   leader sets the timestamp in place
//	ValidateKey(key []byte) error
//
// Values returned by a view alias the store: read-only. Decoded commands
// alias their input. Codec errors wrap ErrTooLarge (HTTP 413) or
// ErrInvalid (HTTP 400). Restore errors caused by the bytes (damage,
// truncation, broken rules) wrap ErrCorruptSnapshot; the reader's own
// errors (I/O) are returned wrapped as they are. Status
// maps to HTTP: OK 200, PreconditionFailed 412, NotFound 404,
// QuotaExceeded 507, IdempotencyConflict 409, Invalid 400.
//
// A proposer builds a Command, sets Fingerprint = ComputeFingerprint()
// when it has an idempotency key, encodes it with the same Limits the
// machines use, and proposes the bytes as one EntryNormal; the leader
// stamps its clock into the bytes (StampTimestamp) before appending.
//
// # Command encoding (version 1)
//
// Integers are little-endian; uvarint is encoding/binary's. Every length
// is checked against its bound before anything is taken or allocated;
// trailing bytes are an error.
//
//	+---------+------+------------------+-------------+------------+-------------+--------+
//	| version | kind | timestamp        | idem length | idem key   | fingerprint | body   |
//	| 1 B = 1 | 1 B  | 8 B int64 unix ns| uvarint     | 0..256 B   | 16 B, only  | by     |
//	|         |      | (leader's clock) | 0 = none    |            | if key set  | kind   |
//	+---------+------+------------------+-------------+------------+-------------+--------+
//	  byte 0    1      2..9 (StampTimestamp writes here)
//
//	kind 1 put, 2 delete:     op without its kind byte
//	kind 3 delete-prefix:     uvarint length (1..4096) | prefix bytes
//	kind 4 batch:             uvarint op count (1..MaxBatchOps) | ops
//
//	op:  +-----------+------+---------------+------------+-----+---------------+-------+
//	     | kind      | cond | if-match rev  | key length | key | value length  | value |
//	     | 1 B, only | 1 B  | 8 B, only if  | uvarint    | 1.. | uvarint, puts | puts  |
//	     | in batch  | 0 1 2| cond = 1      | 1..4096    | 4096| only, ≤ max   | only  |
//	     +-----------+------+---------------+------------+-----+---------------+-------+
//	cond: 0 none, 1 if-match, 2 if-absent (puts only)
//
// # Snapshot format (version 1)
//
//	header, 72 bytes:
//	+----------+---------+---------+----------+------------+----------+-----------+------------+------------+------------+
//	| magic    | version | applied | revision | clock (ns) | idem seq | key count | idem count | size bytes | header CRC |
//	| EKVSNAP\0| u32 = 1 | u64     | u64      | i64        | u64      | u64       | u64        | u64        | u32 CRC32C |
//	+----------+---------+---------+----------+------------+----------+-----------+------------+------------+------------+
//	body: key count key records, strictly ascending keys, then idem count
//	idempotency records, strictly ascending seq:
//	  key:  uvarint key length (1..4096) | key | uvarint revision (1..store revision)
//	        | uvarint value length (≤ 64 MiB) | value
//	  idem: uvarint key length (1..256) | key | fingerprint 16 B | uvarint seq
//	        | expiry i64 (8 B) | status 1 B | uvarint revision | uvarint deleted
//	        | uvarint failed count | uvarint n (≤ 64) | n × uvarint failed index
//	trailer: u32 CRC32C of the body
//
// Restore checks the header CRC, magic and version, every length before
// allocating, UTF-8 and order of keys, revisions not after the store's,
// counters below 2^63, the declared size against the recomputed one,
// remembered statuses, and the body CRC; the counts are loop bounds only,
// so a lying count ends at end of input, not in an allocation.
package kv
