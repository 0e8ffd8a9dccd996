package ebpf

import (
	"fmt"
	"io"

	"github.com/edgekv/edgekv/ebpf/hist"
	"github.com/edgekv/edgekv/ebpf/stage"
)

// syscallNames are the traced syscalls, in the order of their histograms.
// The order is the contract with sys_index() in bpf/trace.bpf.c.
var syscallNames = [NumSyscalls]string{
	"fsync", "fdatasync", "sync_file_range",
	"write", "pwrite64", "writev", "sendmsg", "sendto",
	"read", "pread64", "readv", "recvmsg", "recvfrom",
}

// NumSyscalls is the number of traced syscalls.
const NumSyscalls = 13

// SyscallName returns the name of the syscall whose histogram is
// Snapshot.Syscalls[i].
func SyscallName(i int) string {
	if i < 0 || i >= NumSyscalls {
		return "invalid"
	}
	return syscallNames[i]
}

// Reasons a marker hit could not be paired, indexes of Snapshot.Unpaired.
// The order is the contract with the COUNTER_ enum in bpf/trace.bpf.c.
const (
	// UnpairedOrphan: a stage marked for an id whose Received was never
	// seen (marked before the tracer attached, or evicted).
	UnpairedOrphan = iota
	// UnpairedOutOfOrder: a stage marked for an id that already passed it.
	UnpairedOutOfOrder
	// UnpairedMapFull: the in-flight batch map refused a new id.
	UnpairedMapFull
	// NumUnpaired is the number of reasons.
	NumUnpaired
)

var unpairedNames = [NumUnpaired]string{"orphan", "out_of_order", "map_full"}

// Snapshot is one read of all the histograms. Every field only grows while
// a Tracer is attached; Sub gives the values of an interval.
type Snapshot struct {
	// StageHits counts marker hits per stage.
	StageHits [stage.NumStages]uint64
	// Stages[from][to] is the time from a batch's stage `from` to the
	// next stage marked for the same batch id, `to` (from < to).
	Stages [stage.NumStages][stage.NumStages]hist.Log2
	// Batch is the time from Received to Answered of whole batches.
	Batch hist.Log2
	// Syscalls[i] is the latency of syscall SyscallName(i).
	Syscalls [NumSyscalls]hist.Log2
	// RunQueue is the time the process's threads waited runnable.
	RunQueue hist.Log2
	// Unpaired counts marker hits that could not be paired, by reason.
	Unpaired [NumUnpaired]uint64
}

// Sub returns s minus prev: what happened between the two reads.
func (s *Snapshot) Sub(prev *Snapshot) Snapshot {
	var d Snapshot
	for i := range s.StageHits {
		d.StageHits[i] = subCounter(s.StageHits[i], prev.StageHits[i])
	}
	for from := range s.Stages {
		for to := range s.Stages[from] {
			d.Stages[from][to] = s.Stages[from][to].Sub(&prev.Stages[from][to])
		}
	}
	d.Batch = s.Batch.Sub(&prev.Batch)
	for i := range s.Syscalls {
		d.Syscalls[i] = s.Syscalls[i].Sub(&prev.Syscalls[i])
	}
	d.RunQueue = s.RunQueue.Sub(&prev.RunQueue)
	for i := range s.Unpaired {
		d.Unpaired[i] = subCounter(s.Unpaired[i], prev.Unpaired[i])
	}
	return d
}

func subCounter(now, prev uint64) uint64 {
	if now < prev {
		return now
	}
	return now - prev
}

// WriteText prints every non-empty histogram of s in the style of
// biolatency, stages first, then syscalls, then the run queue; a line of
// marker hits leads. It prints "no events" when there is nothing.
func (s *Snapshot) WriteText(w io.Writer) error {
	var hits uint64
	for _, h := range s.StageHits {
		hits += h
	}
	if hits > 0 {
		line := "marker hits:"
		for i, h := range s.StageHits {
			line += fmt.Sprintf(" %s %d", stage.Stage(i), h)
		}
		for i, n := range s.Unpaired {
			if n > 0 {
				line += fmt.Sprintf(" unpaired-%s %d", unpairedNames[i], n)
			}
		}
		if _, err := fmt.Fprintln(w, line); err != nil {
			return err
		}
	}
	printed := hits > 0
	write := func(title string, h *hist.Log2) error {
		if h.Count() == 0 {
			return nil
		}
		printed = true
		if _, err := fmt.Fprintln(w); err != nil {
			return err
		}
		return hist.WriteText(w, title, h)
	}
	for from := range s.Stages {
		for to := range s.Stages[from] {
			title := fmt.Sprintf("stage %s -> %s", stage.Stage(from), stage.Stage(to))
			if err := write(title, &s.Stages[from][to]); err != nil {
				return err
			}
		}
	}
	if err := write("batch received -> answered", &s.Batch); err != nil {
		return err
	}
	for i := range s.Syscalls {
		if err := write("syscall "+syscallNames[i], &s.Syscalls[i]); err != nil {
			return err
		}
	}
	if err := write("run queue", &s.RunQueue); err != nil {
		return err
	}
	if !printed {
		_, err := fmt.Fprintln(w, "no events")
		return err
	}
	return nil
}
