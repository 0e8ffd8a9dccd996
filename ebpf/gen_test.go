package ebpf

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestGeneratedObjectsAreCurrent checks that the committed BPF object was
// generated from the committed C sources (`go generate ./ebpf/` records
// their hashes in bpf/generated-from.sha256).
func TestGeneratedObjectsAreCurrent(t *testing.T) {
	record, err := os.ReadFile(filepath.Join("bpf", "generated-from.sha256"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(record)), "\n")
	if len(lines) != 2 {
		t.Fatalf("want 2 hashes, got %d lines", len(lines))
	}
	for _, line := range lines {
		wantHash, name, ok := strings.Cut(line, "  ")
		if !ok {
			t.Fatalf("malformed line %q", line)
		}
		src, err := os.ReadFile(filepath.FromSlash(name))
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(src)
		if got := hex.EncodeToString(sum[:]); got != wantHash {
			t.Errorf("%s changed since the BPF object was generated: run `go generate ./ebpf/` and commit its output", name)
		}
	}
}
