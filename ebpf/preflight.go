package ebpf

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// ErrUnavailable is wrapped by every error that means "this host or this
// process cannot trace": missing privileges, missing kernel support, an
// unsupported platform. A node logs it and runs untraced; `edgekv trace`
// prints it and exits non-zero.
var ErrUnavailable = errors.New("ebpf tracing unavailable")

const (
	btfPath      = "/sys/kernel/btf/vmlinux"
	lockdownPath = "/sys/kernel/security/lockdown"

	capSysAdmin = 21
	capPerfmon  = 38
	capBPF      = 39
)

// systemProbe reads the facts Check needs; tests replace it.
type systemProbe struct {
	readFile func(name string) ([]byte, error)
	stat     func(name string) error
}

var hostProbe = systemProbe{
	readFile: os.ReadFile,
	stat: func(name string) error {
		_, err := os.Stat(name)
		return err
	},
}

// Check reports whether this process can load and attach the tracing
// programs: nil, or one error wrapping ErrUnavailable that lists
// everything missing (kernel BTF, CAP_BPF, CAP_PERFMON). Attach calls it
// first; call it alone to log the reason at start without attaching.
func Check() error {
	if err := checkPlatform(); err != nil {
		return err
	}
	return checkSystem(hostProbe)
}

func checkSystem(p systemProbe) error {
	var missing []string
	if err := p.stat(btfPath); err != nil {
		missing = append(missing, fmt.Sprintf("kernel BTF (%s: %v; the kernel must be built with CONFIG_DEBUG_INFO_BTF=y)", btfPath, unwrapPathError(err)))
	}
	caps, err := effectiveCaps(p)
	if err != nil {
		missing = append(missing, fmt.Sprintf("capability information (%v)", err))
	} else {
		var lacking []string
		if !hasCap(caps, capBPF) && !hasCap(caps, capSysAdmin) {
			lacking = append(lacking, "CAP_BPF")
		}
		if !hasCap(caps, capPerfmon) && !hasCap(caps, capSysAdmin) {
			lacking = append(lacking, "CAP_PERFMON")
		}
		if len(lacking) > 0 {
			missing = append(missing, fmt.Sprintf("capabilities %s (run as root, or grant them: setcap cap_bpf,cap_perfmon=ep <binary>)", strings.Join(lacking, " and ")))
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: missing %s", ErrUnavailable, strings.Join(missing, "; "))
	}
	return nil
}

func unwrapPathError(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// effectiveCaps parses the CapEff line of /proc/self/status.
func effectiveCaps(p systemProbe) (uint64, error) {
	status, err := p.readFile("/proc/self/status")
	if err != nil {
		return 0, fmt.Errorf("reading /proc/self/status: %w", err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		hexCaps, ok := strings.CutPrefix(line, "CapEff:")
		if !ok {
			continue
		}
		caps, err := strconv.ParseUint(strings.TrimSpace(hexCaps), 16, 64)
		if err != nil {
			return 0, fmt.Errorf("parsing CapEff %q: %w", strings.TrimSpace(hexCaps), err)
		}
		return caps, nil
	}
	return 0, errors.New("no CapEff line in /proc/self/status")
}

func hasCap(caps uint64, c uint) bool { return caps&(1<<c) != 0 }

// lockdownHint describes a kernel lockdown that can make the kernel refuse
// BPF programs, or returns "" when there is none (or it is unknown).
func lockdownHint(p systemProbe) string {
	b, err := p.readFile(lockdownPath)
	if err != nil {
		return ""
	}
	s := string(b)
	switch {
	case strings.Contains(s, "[confidentiality]"):
		return "kernel lockdown=confidentiality forbids BPF reading kernel memory"
	case strings.Contains(s, "[integrity]"):
		return "kernel lockdown=integrity is active"
	}
	return ""
}
