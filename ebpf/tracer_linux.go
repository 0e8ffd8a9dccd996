//go:build linux && amd64

package ebpf

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	cebpf "github.com/cilium/ebpf"
	"github.com/cilium/ebpf/features"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/edgekv/edgekv/ebpf/stage"
)

func checkPlatform() error { return nil }

// Tracer holds the loaded programs, their maps and their links for one
// traced process. Its methods are safe for concurrent use; after Close
// they fail (Snapshot) or do nothing (metrics writer).
type Tracer struct {
	pid int

	// mu guards closed against Close releasing the maps under a reader.
	mu     sync.Mutex
	closed bool
	coll   *cebpf.Collection
	maps   tracerMaps
	links  []link.Link

	readErrors atomic.Uint64
}

// tracerMaps are the maps Snapshot reads.
type tracerMaps struct {
	stageHists, stageHits, counters, sysHists, runqHist *cebpf.Map
}

// Attach loads the tracing programs and attaches them to the process
// opts.PID: uprobes on its six stage markers, raw_syscalls and scheduler
// tracepoints filtered to its PID. Errors that mean the host cannot trace
// wrap ErrUnavailable. The caller must Close the Tracer: while it is
// attached every syscall on the host pays for a PID check (tens of ns on
// an idle host, ~0.4 µs measured on a loaded VM), unless StagesOnly.
//
// opts.PID is read in this process's PID namespace. In a container with
// its own PID namespace the target must be in the same namespace (a node
// tracing itself, or `edgekv trace` run in the node's container).
func Attach(opts Options) (*Tracer, error) {
	if err := Check(); err != nil {
		return nil, err
	}
	self := opts.PID == 0 || opts.PID == os.Getpid()
	pid := opts.PID
	if self {
		pid = os.Getpid()
	} else if pid < 0 {
		return nil, fmt.Errorf("attaching to pid %d: invalid pid", pid)
	} else if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err != nil {
		return nil, fmt.Errorf("attaching to pid %d: no such process: %w", pid, err)
	}

	spec, err := loadTrace()
	if err != nil {
		return nil, fmt.Errorf("reading embedded BPF object: %w", err)
	}
	if err := spec.Variables[traceVarTargetTgid].Set(uint32(pid)); err != nil {
		return nil, fmt.Errorf("setting target pid: %w", err)
	}
	var onStack uint8
	if stage.ArgOnStack {
		onStack = 1
	}
	if err := spec.Variables[traceVarArgOnStack].Set(onStack); err != nil {
		return nil, fmt.Errorf("setting marker ABI: %w", err)
	}
	nsDev, nsIno, err := pidNamespace()
	if err != nil {
		return nil, err
	}
	if err := spec.Variables[traceVarPidnsDev].Set(nsDev); err != nil {
		return nil, fmt.Errorf("setting PID namespace: %w", err)
	}
	if err := spec.Variables[traceVarPidnsIno].Set(nsIno); err != nil {
		return nil, fmt.Errorf("setting PID namespace: %w", err)
	}

	// Load only the marker program that will be attached: a kernel without
	// uprobe_multi (before 6.6) refuses to load the other.
	multi := !opts.singleUprobes && features.HaveBPFLinkUprobeMulti() == nil
	if multi {
		delete(spec.Programs, traceProgOnMarkerSingle)
	} else {
		delete(spec.Programs, traceProgOnMarker)
	}
	if opts.StagesOnly {
		for _, name := range []string{traceProgOnSysEnter, traceProgOnSysExit, traceProgOnWakeup, traceProgOnWakeupNew, traceProgOnSwitch} {
			delete(spec.Programs, name)
		}
	}
	coll, err := cebpf.NewCollection(spec)
	if err != nil {
		return nil, loadError("loading BPF programs", err)
	}
	t := &Tracer{pid: pid, coll: coll, maps: tracerMaps{
		stageHists: coll.Maps[traceMapStageHists],
		stageHits:  coll.Maps[traceMapStageHits],
		counters:   coll.Maps[traceMapCounters],
		sysHists:   coll.Maps[traceMapSysHists],
		runqHist:   coll.Maps[traceMapRunqHist],
	}}
	if err := t.attach(self, multi, opts); err != nil {
		t.Close()
		return nil, err
	}
	return t, nil
}

func (t *Tracer) attach(self, multi bool, opts Options) error {
	if !opts.StagesOnly {
		if err := t.attachKernelSide(); err != nil {
			return err
		}
	}
	return t.attachMarkers(self, multi, opts.Executable)
}

// attachKernelSide attaches the syscall and scheduler programs.
func (t *Tracer) attachKernelSide() error {
	for _, p := range []struct {
		name string
		prog *cebpf.Program
	}{
		{"sys_enter", t.coll.Programs[traceProgOnSysEnter]}, {"sys_exit", t.coll.Programs[traceProgOnSysExit]},
		{"sched_wakeup", t.coll.Programs[traceProgOnWakeup]}, {"sched_wakeup_new", t.coll.Programs[traceProgOnWakeupNew]}, {"sched_switch", t.coll.Programs[traceProgOnSwitch]},
	} {
		l, err := link.AttachTracing(link.TracingOptions{Program: p.prog})
		if err != nil {
			return loadError("attaching tp_btf "+p.name, err)
		}
		t.links = append(t.links, l)
	}
	return nil
}

// attachMarkers attaches the marker program to the six markers, with the
// stage number as each one's cookie: one uprobe_multi link when the
// kernel has them (multi), else one classic perf-event uprobe per marker.
func (t *Tracer) attachMarkers(self, multi bool, executable string) error {
	symbols := make([]string, stage.NumStages)
	cookies := make([]uint64, stage.NumStages)
	for i := range symbols {
		symbols[i] = stage.Symbol(stage.Stage(i))
		cookies[i] = uint64(i)
	}
	var offsets []uint64 // nil: resolve symbols
	path := executable
	switch {
	case self && executable == "":
		var err error
		if offsets, err = selfMarkerOffsets(); err != nil {
			return fmt.Errorf("locating the stage markers in this process: %w", err)
		}
		path = "/proc/self/exe"
	case path == "":
		path = fmt.Sprintf("/proc/%d/exe", t.pid)
	}
	ex, err := link.OpenExecutable(path)
	if err != nil {
		return fmt.Errorf("opening %s: %w", path, err)
	}
	if multi {
		mopts := &link.UprobeMultiOptions{Addresses: offsets, Cookies: cookies, PID: uint32(t.pid)}
		syms := symbols
		if offsets != nil {
			syms = nil
		}
		l, err := ex.UprobeMulti(syms, t.coll.Programs[traceProgOnMarker], mopts)
		if err != nil {
			return markerError(path, err)
		}
		t.links = append(t.links, l)
		return nil
	}
	for i, sym := range symbols {
		uopts := &link.UprobeOptions{Cookie: cookies[i], PID: t.pid}
		if offsets != nil {
			uopts.Address = offsets[i]
		}
		l, err := ex.Uprobe(sym, t.coll.Programs[traceProgOnMarkerSingle], uopts)
		if err != nil {
			return markerError(path, err)
		}
		t.links = append(t.links, l)
	}
	return nil
}

func markerError(path string, err error) error {
	if errors.Is(err, link.ErrNoSymbol) {
		return fmt.Errorf("attaching uprobes to the stage markers of %s: %w (a build stripped with -ldflags \"-s -w\"? keep the symbol table)", path, err)
	}
	return loadError("attaching uprobes to the stage markers of "+path, err)
}

// initPIDNamespaceIno is the inode number of the initial PID namespace
// (PROC_PID_INIT_INO in the kernel), fixed since Linux 3.8.
const initPIDNamespaceIno = 0xEFFFFFFC

// pidNamespace returns the device (kernel encoding) and inode of this
// process's PID namespace, or zeros for the initial one, where the BPF
// programs compare global tgids directly.
func pidNamespace() (dev, ino uint64, err error) {
	var st unix.Stat_t
	if err := unix.Stat("/proc/self/ns/pid", &st); err != nil {
		return 0, 0, fmt.Errorf("reading this process's PID namespace: %w", err)
	}
	if st.Ino == initPIDNamespaceIno {
		return 0, 0, nil
	}
	// The kernel's dev_t: major in the top 12 bits, minor in the low 20.
	return uint64(unix.Major(st.Dev))<<20 | uint64(unix.Minor(st.Dev)), st.Ino, nil
}

// loadError wraps a load or attach error; a permission error becomes an
// ErrUnavailable error with the lockdown state when there is one.
func loadError(what string, err error) error {
	if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
		hint := lockdownHint(hostProbe)
		if hint != "" {
			hint = " (" + hint + ")"
		}
		return fmt.Errorf("%w: %s: permission denied by the kernel%s: %v", ErrUnavailable, what, hint, err)
	}
	if errors.Is(err, cebpf.ErrNotSupported) {
		return fmt.Errorf("%w: %s: not supported by this kernel: %v", ErrUnavailable, what, err)
	}
	var ve *cebpf.VerifierError
	if errors.As(err, &ve) {
		return fmt.Errorf("%s: %+v", what, ve)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// selfMarkerOffsets returns the file offsets, in this process's
// executable, of the markers' first instructions, found from their
// run-time addresses and /proc/self/maps: no symbol table needed.
func selfMarkerOffsets() ([]uint64, error) {
	maps, err := readSelfMaps()
	if err != nil {
		return nil, err
	}
	pcs := stage.EntryPCs()
	offsets := make([]uint64, 0, len(pcs))
	for i, pc := range pcs {
		off, err := fileOffset(maps, uint64(pc))
		if err != nil {
			return nil, fmt.Errorf("marker %v at %#x: %w", stage.Stage(i), pc, err)
		}
		offsets = append(offsets, off)
	}
	return offsets, nil
}

func readSelfMaps() ([]byte, error) { return os.ReadFile("/proc/self/maps") }

// fileOffset maps an address of this process to an offset in the file
// mapped there, from the text of /proc/<pid>/maps.
func fileOffset(maps []byte, addr uint64) (uint64, error) {
	sc := bufio.NewScanner(bytes.NewReader(maps))
	for sc.Scan() {
		// start-end perms offset dev inode path
		f := strings.Fields(sc.Text())
		if len(f) < 5 {
			continue
		}
		startHex, endHex, ok := strings.Cut(f[0], "-")
		if !ok {
			continue
		}
		start, err1 := strconv.ParseUint(startHex, 16, 64)
		end, err2 := strconv.ParseUint(endHex, 16, 64)
		off, err3 := strconv.ParseUint(f[2], 16, 64)
		if err1 != nil || err2 != nil || err3 != nil {
			continue
		}
		if addr < start || addr >= end {
			continue
		}
		if !strings.Contains(f[1], "x") || f[4] == "0" || len(f) < 6 || !strings.HasPrefix(f[5], "/") {
			return 0, fmt.Errorf("mapping %s is not executable file code", sc.Text())
		}
		return addr - start + off, nil
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, errors.New("address not mapped")
}

// PID returns the traced process's id.
func (t *Tracer) PID() int { return t.pid }

// ProgramRuntime returns the kernel's count of runs of the tracer's
// programs and the time they took, since they were loaded: the in-kernel
// cost of tracing (not the uprobe or tracepoint dispatch around it). The
// kernel counts only while BPF statistics are enabled (sysctl
// kernel.bpf_stats_enabled=1, or cilium/ebpf's EnableStats); otherwise
// both stay zero. For benchmarks and diagnostics.
func (t *Tracer) ProgramRuntime() (runs uint64, total time.Duration, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return 0, 0, errors.New("tracer closed")
	}
	for name, p := range t.coll.Programs {
		st, err := p.Stats()
		if err != nil {
			return 0, 0, fmt.Errorf("reading statistics of %s: %w", name, err)
		}
		runs += st.RunCount
		total += st.Runtime
	}
	return runs, total, nil
}

// Snapshot reads every histogram into dst (about 27 KiB; reuse it).
func (t *Tracer) Snapshot(dst *Snapshot) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return errors.New("tracer closed")
	}
	m := &t.maps
	for i := range dst.StageHits {
		if err := m.stageHits.Lookup(uint32(i), &dst.StageHits[i]); err != nil {
			return fmt.Errorf("reading stage hits: %w", err)
		}
	}
	for from := range dst.Stages {
		for to := range dst.Stages[from] {
			key := uint32(from*stage.NumStages + to)
			if err := m.stageHists.Lookup(key, &dst.Stages[from][to]); err != nil {
				return fmt.Errorf("reading stage histogram %d: %w", key, err)
			}
		}
	}
	if err := m.stageHists.Lookup(uint32(stage.NumStages*stage.NumStages), &dst.Batch); err != nil {
		return fmt.Errorf("reading batch histogram: %w", err)
	}
	for i := range dst.Syscalls {
		if err := m.sysHists.Lookup(uint32(i), &dst.Syscalls[i]); err != nil {
			return fmt.Errorf("reading syscall histogram %d: %w", i, err)
		}
	}
	if err := m.runqHist.Lookup(uint32(0), &dst.RunQueue); err != nil {
		return fmt.Errorf("reading run-queue histogram: %w", err)
	}
	for i := range dst.Unpaired {
		if err := m.counters.Lookup(uint32(i), &dst.Unpaired[i]); err != nil {
			return fmt.Errorf("reading counters: %w", err)
		}
	}
	return nil
}

// RegisterMetrics adds the tracer's histograms to set: each scrape reads
// the kernel maps and writes the families of Snapshot.WritePrometheus,
// plus edgekv_trace_read_errors_total. After Close it writes nothing.
func (t *Tracer) RegisterMetrics(set *metrics.Set) {
	set.RegisterMetricsWriter(t.writeMetrics)
}

func (t *Tracer) writeMetrics(w io.Writer) {
	var s Snapshot
	if err := t.Snapshot(&s); err != nil {
		t.mu.Lock()
		closed := t.closed
		t.mu.Unlock()
		if closed {
			return
		}
		t.readErrors.Add(1)
	} else {
		_ = s.WritePrometheus(w) // a failed write is the scraper's problem
	}
	metrics.WriteMetadataIfNeeded(w, "edgekv_trace_read_errors_total", "counter")
	fmt.Fprintf(w, "edgekv_trace_read_errors_total %d\n", t.readErrors.Load())
}

// Close detaches every program and frees the maps. It is idempotent.
func (t *Tracer) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil
	}
	t.closed = true
	var errs []error
	for i := len(t.links) - 1; i >= 0; i-- {
		if err := t.links[i].Close(); err != nil {
			errs = append(errs, err)
		}
	}
	t.links = nil
	t.coll.Close()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("closing tracer: %w", err)
	}
	return nil
}
