package zz

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/edgekv/edgekv/chaos/check"
	"github.com/edgekv/edgekv/chaos/history"
)

func TestRecheck503(t *testing.T) {
	h, err := history.ReadFile(os.Getenv("HIST"))
	if err != nil {
		t.Fatal(err)
	}
	for i := range h {
		if h[i].IsWrite() && (h[i].Code == 503 || (h[i].Code == 0 && strings.Contains(h[i].Err, "dial tcp"))) {
			h[i].Outcome = history.Fail
		}
	}
	r, err := check.Run(h, check.Config{Timeout: 30 * time.Second})
	t.Log(r.String(), err)
}
