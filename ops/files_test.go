package ops

import (
	"bufio"
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/edgekv/edgekv/config"
)

// specFlags are the flags of SPEC section 1, each of which edgekv.env must
// show. Flags the config package does not parse yet (they arrive with their
// features) are marked pending: their variables may draw a warning.
var specFlags = map[string]bool{ // flag -> pending in config
	"name": false, "data-dir": false, "listen-client": false, "listen-peer": false,
	"advertise-client": false, "advertise-peer": false, "initial-cluster": false,
	"initial-cluster-token": false, "join": false, "heartbeat-interval": false,
	"election-timeout": false, "request-timeout": false, "max-batch-bytes": false,
	"max-batch-delay": false, "max-inflight-bytes": false, "max-pending": false,
	"quota-bytes": false, "compression": false, "snapshot-entries": false,
	"snapshot-keep": false, "idempotency-ttl": false, "idempotency-max-keys": false,
	"max-value-bytes": false, "max-request-bytes": false, "max-txn-ops": false,
	"log-level": false, "log-format": false, "trace": false,
	"shutdown-timeout": false, // beyond SPEC: bounds the graceful stop (node/shutdown.go)
	// Beyond SPEC: the contention profiles' sampling (ops/pprof.go).
	"mutex-profile-fraction": false, "block-profile-rate": false,
}

func envVar(flag string) string {
	return "EDGEKV_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// TestEnvFileShowsEveryFlagWithItsDefault: every SPEC flag is in
// edgekv.env, commented out, and uncommenting every line changes nothing:
// config parses them into exactly its defaults.
func TestEnvFileShowsEveryFlagWithItsDefault(t *testing.T) {
	data, err := os.ReadFile("edgekv.env")
	if err != nil {
		t.Fatal(err)
	}
	line := regexp.MustCompile(`^#(EDGEKV_[A-Z_]+)=(.*)$`)
	var environ []string
	seen := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		l := sc.Text()
		if strings.HasPrefix(l, "EDGEKV_") {
			t.Errorf("edgekv.env sets %q: every line of the example must stay commented", l)
		}
		if m := line.FindStringSubmatch(l); m != nil {
			if seen[m[1]] {
				t.Errorf("%s listed twice", m[1])
			}
			seen[m[1]] = true
			environ = append(environ, m[1]+"="+m[2])
		}
	}
	for flag := range specFlags {
		if !seen[envVar(flag)] {
			t.Errorf("edgekv.env lacks %s (--%s)", envVar(flag), flag)
		}
	}
	for v := range seen {
		found := false
		for flag := range specFlags {
			found = found || envVar(flag) == v
		}
		if !found {
			t.Errorf("edgekv.env lists %s, which is no SPEC flag", v)
		}
	}

	defaults, _, err := config.Parse(nil, nil, &bytes.Buffer{})
	if err != nil {
		t.Fatalf("config defaults: %v", err)
	}
	fromFile, warnings, err := config.Parse(nil, environ, &bytes.Buffer{})
	if err != nil {
		t.Fatalf("config rejects the env file's defaults: %v", err)
	}
	if !reflect.DeepEqual(defaults, fromFile) {
		t.Fatalf("env file values differ from the defaults:\nfile:     %+v\ndefaults: %+v", fromFile, defaults)
	}
	for _, w := range warnings {
		ok := false
		for flag, pending := range specFlags {
			ok = ok || (pending && strings.Contains(w, envVar(flag)))
		}
		if !ok {
			t.Errorf("unexpected warning for the env file: %s", w)
		}
	}
	// Every flag config knows is in the env file (config may be ahead of
	// specFlags: then this names the variable to add).
	var usage bytes.Buffer
	if _, _, err := config.Parse([]string{"--help"}, nil, &usage); !errors.Is(err, config.ErrHelp) {
		t.Fatalf("--help: %v", err)
	}
	for _, m := range regexp.MustCompile(`env (EDGEKV_[A-Z_]+)`).FindAllStringSubmatch(usage.String(), -1) {
		if !seen[m[1]] {
			t.Errorf("config knows %s but edgekv.env does not show it", m[1])
		}
	}
}

// TestServiceUnit checks the settings the runbooks rely on, and runs
// `systemd-analyze verify` when it is installed.
func TestServiceUnit(t *testing.T) {
	data, err := os.ReadFile("edgekv.service")
	if err != nil {
		t.Fatal(err)
	}
	settings := map[string]string{}
	for _, l := range strings.Split(string(data), "\n") {
		if k, v, ok := strings.Cut(l, "="); ok && !strings.HasPrefix(l, "#") {
			settings[k] = v
		}
	}
	for k, want := range map[string]string{
		"Restart": "on-failure", "KillSignal": "SIGTERM", "User": "edgekv", "Group": "edgekv",
		"StateDirectory": "edgekv", "LimitNOFILE": "65536", "EnvironmentFile": "-/etc/edgekv/edgekv.env",
		"CapabilityBoundingSet": "", "NoNewPrivileges": "yes",
	} {
		if got, ok := settings[k]; !ok || got != want {
			t.Errorf("%s=%q (set: %v), want %q", k, got, ok, want)
		}
	}
	if _, ok := settings["AmbientCapabilities"]; ok {
		t.Error("AmbientCapabilities must stay commented out (only for --trace ebpf)")
	}
	stop, err := time.ParseDuration(settings["TimeoutStopSec"])
	if err != nil {
		t.Fatalf("TimeoutStopSec: %v", err)
	}
	// Leader transfer (<= 2 election timeouts) + request drain + WAL sync.
	if min := 2*time.Second + 5*time.Second + 5*time.Second; stop < min {
		t.Errorf("TimeoutStopSec=%v leaves no room for a graceful stop (want >= %v)", stop, min)
	}

	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skipf("systemd-analyze not installed: %v", err)
	}
	dir := t.TempDir()
	unit := strings.ReplaceAll(string(data), "ExecStart=/usr/local/bin/edgekv", "ExecStart=/bin/true")
	path := filepath.Join(dir, "edgekv.service")
	if err := os.WriteFile(path, []byte(unit), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", path).CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}
