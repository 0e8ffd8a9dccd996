package check

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/edgekv/edgekv/chaos/history"
)

// Summary counts what a history holds.
type Summary struct {
	Ops        int
	ByKind     map[history.Kind]map[history.Outcome]int
	Unknown    int // Ops with an Unknown outcome
	Clients    int
	Keys       int           // distinct keys named
	Span       time.Duration // first call to last return
	Partitions int           // set by Run: independent key sets checked
	LinElapsed time.Duration // set by Run: time the linearizability check took
}

// Summarize counts h.
func Summarize(h history.History) Summary {
	s := Summary{Ops: len(h), ByKind: map[history.Kind]map[history.Outcome]int{}}
	clients := map[int]bool{}
	keys := map[string]bool{}
	var first, last int64
	for i := range h {
		o := &h[i]
		if s.ByKind[o.Kind] == nil {
			s.ByKind[o.Kind] = map[history.Outcome]int{}
		}
		s.ByKind[o.Kind][o.Outcome]++
		if o.Outcome == history.Unknown {
			s.Unknown++
		}
		clients[o.Client] = true
		for _, k := range o.Keys() {
			keys[k] = true
		}
		if i == 0 || o.Call < first {
			first = o.Call
		}
		if o.Return > last {
			last = o.Return
		}
	}
	s.Clients, s.Keys = len(clients), len(keys)
	if len(h) > 0 {
		s.Span = time.Duration(last - first)
	}
	return s
}

// String renders the summary, one kind per line.
func (s Summary) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d ops (%d unknown) by %d clients over %d keys in %v\n",
		s.Ops, s.Unknown, s.Clients, s.Keys, s.Span.Round(time.Millisecond))
	kinds := make([]string, 0, len(s.ByKind))
	for k := range s.ByKind {
		kinds = append(kinds, string(k))
	}
	sort.Strings(kinds)
	for _, k := range kinds {
		m := s.ByKind[history.Kind(k)]
		fmt.Fprintf(&b, "  %-13s ok=%d fail=%d unknown=%d\n", k, m[history.OK], m[history.Fail], m[history.Unknown])
	}
	return b.String()
}
