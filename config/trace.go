package config

import "fmt"

// TraceMode is --trace: the tracing a node attaches at start.
type TraceMode uint8

const (
	// TraceOff attaches nothing (the default). The write path's stage
	// markers still run, at a few nanoseconds per batch, so that
	// `edgekv trace --pid` or bpftrace can attach later.
	TraceOff TraceMode = iota
	// TraceEBPF attaches the built-in eBPF tracer (package ebpf) to the
	// node's own process and exports its histograms on /metrics. A host
	// that cannot trace gets one log line and an untraced node.
	TraceEBPF
)

var traceModeNames = [...]string{TraceOff: "off", TraceEBPF: "ebpf"}

// String returns the flag value naming m.
func (m TraceMode) String() string {
	if int(m) < len(traceModeNames) {
		return traceModeNames[m]
	}
	return fmt.Sprintf("TraceMode(%d)", uint8(m))
}

// Set parses a --trace value (flag.Value): "off" or "ebpf".
func (m *TraceMode) Set(s string) error {
	for i, name := range traceModeNames {
		if s == name {
			*m = TraceMode(i)
			return nil
		}
	}
	return fmt.Errorf("want off or ebpf")
}
