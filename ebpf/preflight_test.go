package ebpf

import (
	"errors"
	"io/fs"
	"os"
	"strings"
	"testing"
)

func fakeProbe(capEff string, haveBTF bool) systemProbe {
	return systemProbe{
		readFile: func(name string) ([]byte, error) {
			if name == "/proc/self/status" {
				if capEff == "" {
					return []byte("Name:\tedgekv\nUid:\t0\n"), nil
				}
				return []byte("Name:\tedgekv\nCapInh:\t0000000000000000\nCapEff:\t" + capEff + "\nCapBnd:\t000001ffffffffff\n"), nil
			}
			return nil, fs.ErrNotExist
		},
		stat: func(name string) error {
			if name == btfPath && haveBTF {
				return nil
			}
			return &fs.PathError{Op: "stat", Path: name, Err: fs.ErrNotExist}
		},
	}
}

func TestCheckSystem(t *testing.T) {
	for _, tc := range []struct {
		name     string
		probe    systemProbe
		wantOK   bool
		mentions []string
		absent   []string
	}{
		{name: "root", probe: fakeProbe("000001ffffffffff", true), wantOK: true},
		{name: "bpf+perfmon", probe: fakeProbe("000000c000000000", true), wantOK: true},
		{name: "sys_admin only", probe: fakeProbe("0000000000200000", true), wantOK: true},
		{name: "no caps", probe: fakeProbe("0000000000000000", true),
			mentions: []string{"CAP_BPF and CAP_PERFMON", "setcap"}, absent: []string{"BTF"}},
		{name: "bpf only", probe: fakeProbe("0000008000000000", true),
			mentions: []string{"capabilities CAP_PERFMON"}, absent: []string{"CAP_BPF"}},
		{name: "perfmon only", probe: fakeProbe("0000004000000000", true),
			mentions: []string{"capabilities CAP_BPF "}, absent: []string{"CAP_PERFMON"}},
		{name: "no btf", probe: fakeProbe("000001ffffffffff", false),
			mentions: []string{"kernel BTF", btfPath, "CONFIG_DEBUG_INFO_BTF"}, absent: []string{"CAP_"}},
		{name: "nothing", probe: fakeProbe("0", false),
			mentions: []string{"kernel BTF", "CAP_BPF and CAP_PERFMON"}},
		{name: "no CapEff", probe: fakeProbe("", true), mentions: []string{"no CapEff line"}},
		{name: "bad CapEff", probe: fakeProbe("zz", true), mentions: []string{`parsing CapEff "zz"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := checkSystem(tc.probe)
			if tc.wantOK {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("no error")
			}
			if !errors.Is(err, ErrUnavailable) {
				t.Errorf("error %v does not wrap ErrUnavailable", err)
			}
			msg := err.Error()
			if strings.Contains(msg, "\n") {
				t.Errorf("error is not one line: %q", msg)
			}
			for _, m := range tc.mentions {
				if !strings.Contains(msg, m) {
					t.Errorf("error %q does not mention %q", msg, m)
				}
			}
			for _, a := range tc.absent {
				if strings.Contains(msg, a) {
					t.Errorf("error %q mentions %q", msg, a)
				}
			}
		})
	}
}

func TestLockdownHint(t *testing.T) {
	for content, want := range map[string]string{
		"none integrity [confidentiality]\n": "confidentiality",
		"none [integrity] confidentiality\n": "integrity",
		"[none] integrity confidentiality\n": "",
	} {
		p := systemProbe{readFile: func(string) ([]byte, error) { return []byte(content), nil }}
		got := lockdownHint(p)
		if (want == "") != (got == "") || !strings.Contains(got, want) {
			t.Errorf("lockdown %q: hint %q, want one mentioning %q", content, got, want)
		}
	}
	p := systemProbe{readFile: func(string) ([]byte, error) { return nil, fs.ErrNotExist }}
	if got := lockdownHint(p); got != "" {
		t.Errorf("no securityfs: hint %q, want none", got)
	}
}

// FuzzEffectiveCaps feeds arbitrary /proc/self/status text to the
// capability parser: an error or a value, never a panic, and a value only
// from a CapEff line.
func FuzzEffectiveCaps(f *testing.F) {
	f.Add("Name:\tx\nCapEff:\t000001ffffffffff\n")
	f.Add("CapEff:\t0\n")
	f.Add("CapEff:zz")
	f.Add("")
	f.Add("CapEff:\t1ffffffffffffffffff\n")
	f.Fuzz(func(t *testing.T, status string) {
		p := systemProbe{readFile: func(string) ([]byte, error) { return []byte(status), nil }}
		caps, err := effectiveCaps(p)
		if err == nil && !strings.Contains(status, "CapEff:") {
			t.Fatalf("caps %#x parsed from a status without CapEff", caps)
		}
		_ = checkSystem(systemProbe{readFile: p.readFile, stat: func(string) error { return nil }})
	})
}

func TestProcessAlive(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc")
	}
	if !processAlive(os.Getpid()) {
		t.Error("this process is not alive")
	}
	if processAlive(1 << 30) {
		t.Error("pid 2^30 is alive")
	}
}
