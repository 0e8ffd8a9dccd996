// Package gobuild builds a main package of this module into a directory,
// for tests that need a separate binary with its symbol table (go test
// strips its own test binaries). Test support only: never imported by
// production code.
package gobuild

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
)

// Build runs `go build [flags] -o dir/<name> pkg` with CGO disabled and
// returns the binary's path.
func Build(dir, pkg string, flags ...string) (string, error) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	out := filepath.Join(dir, filepath.Base(pkg))
	args := append(append([]string{"build"}, flags...), "-o", out, pkg)
	cmd := exec.Command(goTool, args...)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s: %w\n%s", pkg, err, b)
	}
	return out, nil
}
