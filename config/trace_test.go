package config

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestTraceFlag(t *testing.T) {
	for _, tc := range []struct {
		args, env []string
		want      TraceMode
	}{
		{nil, nil, TraceOff},
		{[]string{"--trace", "off"}, nil, TraceOff},
		{[]string{"--trace", "ebpf"}, nil, TraceEBPF},
		{[]string{"--trace=ebpf"}, nil, TraceEBPF},
		{nil, []string{"EDGEKV_TRACE=ebpf"}, TraceEBPF},
		{[]string{"--trace", "off"}, []string{"EDGEKV_TRACE=ebpf"}, TraceOff}, // the command line wins
	} {
		cfg, warnings := mustParse(t, tc.args, tc.env)
		if cfg.Trace != tc.want || len(warnings) != 0 {
			t.Errorf("args %q env %q: Trace = %v (warnings %v), want %v", tc.args, tc.env, cfg.Trace, warnings, tc.want)
		}
	}
}

func TestTraceFlagRejectsUnknownModes(t *testing.T) {
	for _, tc := range []struct {
		args, env []string
		names     string // what the one-line error must name
	}{
		{[]string{"--trace", "bpf"}, nil, "-trace"},
		{[]string{"--trace", "EBPF"}, nil, "-trace"}, // values are case-sensitive, like every enum flag here
		{[]string{"--trace", ""}, nil, "-trace"},
		{nil, []string{"EDGEKV_TRACE=on"}, "EDGEKV_TRACE"},
	} {
		_, _, err := Parse(tc.args, tc.env, &bytes.Buffer{})
		if err == nil {
			t.Errorf("args %q env %q: accepted", tc.args, tc.env)
			continue
		}
		msg := err.Error()
		if !strings.Contains(msg, tc.names) || !strings.Contains(msg, "want off or ebpf") || strings.Contains(msg, "\n") {
			t.Errorf("args %q env %q: error %q does not name %s and the valid modes on one line", tc.args, tc.env, msg, tc.names)
		}
	}
}

func TestTraceFlagHelp(t *testing.T) {
	var usage bytes.Buffer
	if _, _, err := Parse([]string{"--help"}, nil, &usage); !errors.Is(err, ErrHelp) {
		t.Fatalf("--help: %v", err)
	}
	text := usage.String()
	i := strings.Index(text, "--trace mode")
	if i < 0 {
		t.Fatalf("--help does not document --trace:\n%s", text)
	}
	entry := text[i:]
	if j := strings.Index(entry[1:], "\n  --"); j >= 0 {
		entry = entry[:j+1]
	}
	for _, want := range []string{"off, or ebpf", "CAP_BPF", "default off", "env EDGEKV_TRACE"} {
		if !strings.Contains(entry, want) {
			t.Errorf("--trace help lacks %q:\n%s", want, entry)
		}
	}
}

func TestTraceModeString(t *testing.T) {
	if TraceOff.String() != "off" || TraceEBPF.String() != "ebpf" || TraceMode(7).String() != "TraceMode(7)" {
		t.Fatalf("String: %v %v %v", TraceOff, TraceEBPF, TraceMode(7))
	}
}
