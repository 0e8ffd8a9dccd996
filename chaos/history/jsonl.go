package history

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
)

// MaxLineBytes bounds one JSON line when reading a history back: an Op of a
// PutAll batch at SPEC's --max-request-bytes default (4 MiB) fits, base64
// and JSON overhead included.
const MaxLineBytes = 16 << 20

// WriteJSONL writes h as JSON lines, one Op per line.
func WriteJSONL(w io.Writer, h History) error {
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	for i := range h {
		if err := enc.Encode(&h[i]); err != nil {
			return fmt.Errorf("history: encode op %d: %w", h[i].ID, err)
		}
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("history: write: %w", err)
	}
	return nil
}

// ReadJSONL reads a history written by WriteJSONL and validates it. Lines
// longer than MaxLineBytes are an error, never a large allocation.
func ReadJSONL(r io.Reader) (History, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), MaxLineBytes)
	var h History
	for line := 1; sc.Scan(); line++ {
		if len(sc.Bytes()) == 0 {
			continue
		}
		var o Op
		if err := json.Unmarshal(sc.Bytes(), &o); err != nil {
			return nil, fmt.Errorf("%w: line %d: %w", ErrBadHistory, line, err)
		}
		h = append(h, o)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%w: read: %w", ErrBadHistory, err)
	}
	if err := h.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadHistory, err)
	}
	return h, nil
}

// WriteFile writes h to path as JSON lines.
func WriteFile(path string, h History) (err error) {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("history: %w", err)
	}
	defer func() {
		if cerr := f.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("history: close %s: %w", path, cerr)
		}
	}()
	return WriteJSONL(f, h)
}

// ReadFile reads a history written by WriteFile.
func ReadFile(path string) (History, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("history: %w", err)
	}
	defer f.Close()
	h, err := ReadJSONL(f)
	if err != nil {
		return nil, fmt.Errorf("history: %s: %w", path, err)
	}
	return h, nil
}
