// Package stage holds the write path's tracing markers: one function per
// stage boundary of a write (received, proposed, persisted, committed,
// applied, answered), each taking the id of the batch that crossed it.
//
// A marker does nothing. It exists so that an eBPF uprobe (package ebpf,
// or the bpftrace scripts in ops/bpftrace) can fire on its first
// instruction and read the id; pairing two markers' hits by id gives the
// time a batch spent between the two stages. Ids pair hits, not threads:
// a goroutine can move to another OS thread between two stages.
//
// Cost: with no probe attached a marker is one direct call of a two-
// instruction leaf (a 5-byte NOP and RET), a few nanoseconds; with a probe
// attached each hit costs the kernel's uprobe path (see the package
// benchmarks). Call markers once per batch, never per byte or per key.
//
// On amd64 the markers are assembly (ABI0, stack arguments) so that they
// begin with the 5-byte NOP the kernel can turn into a cheap call into its
// uprobe trampoline. Their ELF symbols are "<package path>.<name>.abi0";
// Symbol returns them. The release binary must keep its symbol table
// (never link with -ldflags "-s -w"), or tracers must attach by address
// (EntryPCs).
//
// This package must never do anything observable: no allocation, no
// locking, no I/O, no state.
package stage

// Stage is one boundary of the write path, in the order a batch crosses
// them.
type Stage uint8

// The stages of a write, in order. Their numeric values are part of the
// contract with the BPF programs (package ebpf), which receive them as
// attach cookies.
const (
	// StageReceived: the batcher opened the batch (its first request).
	StageReceived Stage = iota
	// StageProposed: the batch was handed to Raft as one proposal.
	StageProposed
	// StagePersisted: the leader's WAL fsync covering the batch returned.
	StagePersisted
	// StageCommitted: the commit index reached the batch's entry.
	StageCommitted
	// StageApplied: the state machine applied the batch.
	StageApplied
	// StageAnswered: every response of the batch was handed to its client.
	StageAnswered

	// NumStages is the number of stages.
	NumStages = int(StageAnswered) + 1
)

// PackagePath is this package's import path, the prefix of the markers'
// ELF symbols.
const PackagePath = "github.com/edgekv/edgekv/ebpf/stage"

var stageNames = [NumStages]string{"received", "proposed", "persisted", "committed", "applied", "answered"}

// markerNames are the Go names of the functions the probes attach to.
var markerNames = [NumStages]string{"received", "proposed", "persisted", "committed", "applied", "answered"}

// String returns the stage's lower-case name ("received", ...).
func (s Stage) String() string {
	if int(s) >= NumStages {
		return "invalid"
	}
	return stageNames[s]
}

// Received marks that the batch with this id was opened.
func Received(batchID uint64) { received(batchID) }

// Proposed marks that the batch with this id was proposed to Raft.
func Proposed(batchID uint64) { proposed(batchID) }

// Persisted marks that the leader's fsync covering the batch returned.
func Persisted(batchID uint64) { persisted(batchID) }

// Committed marks that the batch's entry is committed.
func Committed(batchID uint64) { committed(batchID) }

// Applied marks that the state machine applied the batch.
func Applied(batchID uint64) { applied(batchID) }

// Answered marks that every response of the batch was handed back.
func Answered(batchID uint64) { answered(batchID) }

// Mark calls the marker of stage s. It is for tests and tools; the write
// path calls the named functions above (they inline to one call).
func Mark(s Stage, batchID uint64) {
	switch s {
	case StageReceived:
		received(batchID)
	case StageProposed:
		proposed(batchID)
	case StagePersisted:
		persisted(batchID)
	case StageCommitted:
		committed(batchID)
	case StageApplied:
		applied(batchID)
	case StageAnswered:
		answered(batchID)
	}
}
