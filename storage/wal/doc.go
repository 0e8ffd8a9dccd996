// Package wal is edgekv's write-ahead log: a directory of numbered segment
// files holding Raft entries, hard states and snapshot references, appended
// in batches that share one fdatasync (group commit), and replayed at start.
//
// It must never acknowledge a batch before its fdatasync returned, never
// write after data it could not sync (a failed sync makes the log refuse
// every later write until reopened), and never let recovery return data
// from a damaged synced region: it either returns exactly the synced batches
// (plus possibly whole unacknowledged ones) or a *diskerr.CorruptError that
// names the file and offset.
//
// # Segments
//
// Segment files are named %016x.wal after their sequence number, which
// increases by one per segment; a gap in the sequence is corruption. While
// a segment is active, a background goroutine prepares the next one under a
// temporary name (%016x.wal.prep): reserved with fallocate, zero-filled and
// synced, so that rotation does not stall and an fdatasync of an append
// flushes data only (no block allocation or extent conversion to journal).
// Recovery deletes leftover .prep files; they never hold records. A batch
// never spans segments: when the next batch would not fit, the log rotates
// first (a batch larger than a segment gets a segment of its own size).
// Creating a segment writes its header batch, syncs the file, renames it to
// its segment name, then syncs the directory. Every segment starts with the state needed to replay from it
// alone, so that segments below a snapshot can be removed:
//
//	+----------------+-----------+-------------+----------+------------------+-------+
//	| SegmentHeader  | HardState | SnapshotRef | BatchEnd | batch ... batch  | zeros |
//	+----------------+-----------+-------------+----------+------------------+-------+
//	 `------------- header batch (synced) -------------'
//
// # Records
//
// All integers are little-endian.
//
//	+---------------+---------------+----------+--------------------------+
//	| CRC-32C (u32) | length (u32)  | type (u8)| payload (length bytes)   |
//	+---------------+---------------+----------+--------------------------+
//	 CRC-32C (Castagnoli) covers length, type and payload.
//	 length <= MaxPayloadBytes; an all-zero 9-byte header marks the end of
//	 the written part of a preallocated segment.
//
// Payloads by type (format version 1):
//
//	1 SegmentHeader  magic "edgekvWL" (8) | version u16 | sequence u64
//	2 Entry          term u64 | index u64 | entry type u8 | request id u64 |
//	                 origin u64 | data
//	3 HardState      term u64 | vote u64 | commit u64
//	4 SnapshotRef    index u64 | term u64 | flags u8 (bit 0: reset the log)
//	5 BatchEnd       own offset in the segment u64 | magic "edgekvBE" (8)
//
// The version lives in each segment's header; a segment of a newer version
// is refused with a clear error. New record types need a new version.
//
// # Batches and recovery
//
// A batch is the records of one or more concurrent Save calls followed by a
// BatchEnd, written with one write and made durable with one fdatasync. The
// log writes batch N+1 only after batch N's sync returned, so at a crash at
// most the last batch of the last segment can be unsynced. Recovery keeps
// every complete batch and drops the records after the last BatchEnd (a
// torn, unacknowledged batch), truncating the segment there and logging how
// many bytes were dropped. It refuses to start when the damage could be in
// synced data:
//
//   - a bad record in any segment but the last, or a missing segment;
//   - a bad record in the last segment followed by anything that is, or is
//     one bit away from, a BatchEnd at its own offset (the own-offset field
//     and the trailing magic make a BatchEnd recognisable even when a bit of
//     it flipped, and cannot appear by chance after a torn write, which
//     leaves zeros or stale zeros past the tear).
//
// A power cut during the last batch's write-back can also persist its
// sectors out of order (the batch end reached the disk, an earlier sector
// did not). That is recognised by a whole 512-byte sector inside the last
// batch that is still zero (segments are zero-filled; bit rot leaves no
// zeroed sector): the batch is dropped as torn.
//
// The one case that cannot be told apart is a last batch that was written
// completely but never synced and then damaged: it is refused, as if it had
// been synced, because refusing is the safe side.
//
// Entries are replayed in order; an entry at index i replaces i and every
// later one (Raft log truncation, paper §5.3). A SnapshotRef drops the
// entries at or below its index; with the reset flag (a snapshot installed
// from the leader, paper §7) it drops every entry before it.
package wal
