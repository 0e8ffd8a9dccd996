// Package node is the edgekv runtime: it drives one member of the cluster
// by joining the Raft core (consensus), the log store, the peer transport,
// the key-value state machine (kv) and the request batcher (batch), and it
// implements the HTTP layer's Backend (httpapi).
//
// It must never hold a lock across fsync or network I/O, never let a
// message that depends on persistence leave before the persistence is
// done, never answer a client with anything but 504 once its proposal may
// have been appended to a log, and never touch consensus.Node outside the
// raft loop.
//
// # Goroutines
//
// Node.Start starts three goroutines; Node.Close stops them and waits.
//
//	            inbox (bounded, drop when full)
//	transport ─────────────────────────────┐
//	                                       ▼
//	batcher ──Wakeup/park timer──▶  raft loop  (sole owner of consensus.Node)
//	                                 │      │   sends Ready.Messages at once
//	        persistQ (in Seq order)  │      │  applyQ (CommittedEntries)
//	                                 ▼      ▼
//	                          persister   applier
//	  group commit: one Save for every    kv.ApplyEntries, publish the view,
//	  queued Ready, then send their       complete waiters of entries whose
//	  MessagesAfterPersist, then report   Origin is this member, report the
//	  persisted(seq)                      applied index
//
// The persister and applier report back through coalescing notifications
// (an atomic value and a channel of capacity one), so they never block on
// the raft loop; the raft loop blocks on their bounded queues, which is the
// backpressure between the stages (persistQueueLen, applyQueueLen).
// Pipelining: while the persister fsyncs one group, the raft loop keeps
// proposing, sending appends and queueing further Readys. A group whose
// only change is a higher commit index is not written at all (the commit
// index is volatile state, paper Figure 2): it rides along with the next
// write of entries, which halves the fsyncs of a sequential writer.
//
// # Requests
//
// A write is encoded as a kv command, given a request id by the batch
// Registry and submitted to the Batcher. The raft loop turns each batch
// into entries carrying the request id and this member's id as Origin and
// proposes them; a follower's consensus core forwards them to the leader
// (MsgProp). The leader stamps its clock into forwarded commands
// (kv.StampTimestamp) and, since the wire codec may not carry Origin yet,
// fills an entry's missing Origin from the message's sender: a node only
// ever forwards its own proposals. Request ids are moreover unique across
// members by construction (the member's index among the voters sits in
// the id's epoch bits), so an entry whose Origin was lost in transit is
// still matched only by the member that proposed it. Every member applies
// every entry; the applier completes waiters only for entries whose Origin
// is itself or unknown, so
// the answer (including 412, 404, 409 and 507) is the one the replicated
// state machine computed. A proposal refused before it reached any log
// (no leader, no quorum, leader overloaded) is answered 503 (429 when the
// leader is overloaded); a full batcher queue or waiter table 429; once a
// proposal may have been appended, only the committed entry or 504 at
// --request-timeout.
//
// Reads: stale reads come from the latest published view. Linearizable
// reads use ReadIndex (Raft thesis §6.4; followers ask the leader) and
// then wait until the applied index reaches the read index. Lease reads
// (thesis §6.4.1) are served by a leader from its own state, with no round
// trip, while the lease of its newest majority-confirmed heartbeat round
// holds on the monotonic clock (lease.go says how long and why); anywhere
// else, or once the lease has run out, they are linearizable reads.
//
// A full disk (storage.ErrNoSpace, or ErrIO that wrote nothing) does not
// stop the member: new writes get 507 at once while the persister retries
// the log write with backoff; any other store error stops the member
// (Done, Err), since nothing could be acknowledged safely afterwards.
//
// # Process assembly (Server)
//
// Start opens the data dir (storage checks its metadata: name, random
// member id, cluster id, format), reads the runtime's own state file
// (edgekv-node.json: boot counter and member table), starts the peer
// transport, and for a new data dir learns the membership before Raft
// starts: from the peer handshake for the members of --initial-cluster
// (discover.go), or from a running member for --join (membership_join.go).
// Close stops the HTTP server, the member, the transport and the store,
// in that order; GracefulStop (shutdown.go, on SIGTERM) first refuses new
// requests with 503, hands leadership over and lets the requests being
// served finish.
//
// # Membership
//
// The member table (name, id, peer and client address, voter or learner;
// members.go) is replicated state: conf-change entries carry the
// subject's record in their Context and members announce their own client
// address in the log; the applier applies both in order and the server
// persists the table. The transport's peers follow the configuration in
// force (Ready.ConfState). Membership requests (membership.go) enter the
// raft loop as calls; the leader promotes learners that joined with
// --join once they have caught up. A member that learns it was removed
// stops serving and its process exits; its data dir refuses to start
// again. The membership endpoints forward to the leader over HTTP (ops).
//
// # Snapshots, backups, disaster recovery
//
// Every --snapshot-entries applied entries the member writes a snapshot of
// an immutable view off the raft loop and compacts its log; a follower
// whose entries were compacted away is streamed the snapshot file, holds
// it aside and installs it only once the core accepts it (never one older
// than its commit index); a restart restores the newest snapshot and
// replays the log after it (snapshot_runtime.go, snapshot_store.go). The
// snapshot's membership blob is snapblob.go. GET /v1/snapshot streams a
// backup (a zstd snapshot file of one view), Restore builds a new
// cluster's first data dir from one, and ForceNewCluster turns a
// survivor's data dir into a single-voter cluster (snapshot_backup.go).
//
// # Not yet
//
// At shutdown without GracefulStop, writes already proposed are answered
// when applied or at their timeout (504).
//
// Request ids (batch.Registry: slot, generation, epoch) carry the member's
// index and its boot counter in the epoch; BootEpoch must differ between
// boots so that an entry of an earlier boot replayed from the log cannot
// complete a waiter of this one.
package node
