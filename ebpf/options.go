package ebpf

// Options says what Attach traces.
type Options struct {
	// PID is the process to trace. 0 means this process (`--trace ebpf`).
	PID int
	// Executable is the binary whose markers are probed. Empty means: for
	// this process, attach by the markers' addresses (no symbol table
	// needed); for another, /proc/<PID>/exe, by symbol (the binary must
	// keep its symbol table).
	Executable string
	// StagesOnly attaches only the stage-marker uprobes: no raw_syscalls
	// programs (which tax every syscall on the host, including the
	// syscall an optimized uprobe hit makes) and no scheduler programs.
	// The syscall and run-queue histograms then stay empty.
	StagesOnly bool

	// singleUprobes forces one classic uprobe per marker instead of a
	// uprobe_multi link: the path kernels before 6.6 take (for tests).
	singleUprobes bool
}
