package check

import (
	"fmt"
	"testing"
	"time"
)

// BenchmarkLinearizability measures the checking time of generated
// histories (6 clients) of 1k and 10k ops over a few keys. The cost grows
// with the ops per partition and, steeply, with the Unknown writes pending
// at once in one partition: every one of them may or may not have taken
// effect at each later point.
func BenchmarkLinearizability(b *testing.B) {
	cases := []struct {
		ops, groups, keysPer int
		unknownRate          float64
	}{
		{1000, 1, 3, 0},
		{1000, 1, 3, 0.1},
		{1000, 3, 3, 0.1},
		{10000, 1, 3, 0},
		{10000, 1, 3, 0.02},
		{10000, 1, 3, 0.1},
		{10000, 3, 3, 0.1},
		{10000, 10, 3, 0.1},
	}
	for _, c := range cases {
		cfg := defaultGen()
		cfg.ops, cfg.groups, cfg.keysPer, cfg.unknownRate = c.ops, c.groups, c.keysPer, c.unknownRate
		h, _ := generate(1, cfg)
		name := fmt.Sprintf("ops=%d/keys=%d/partitions=%d/unknown=%.0f%%", c.ops, c.groups*c.keysPer, c.groups, 100*c.unknownRate)
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				r := Linearizability(h, Config{Timeout: 2 * time.Minute})
				if r.Verdict != Ok {
					b.Fatalf("verdict %s after %v", r.Verdict, r.Elapsed)
				}
			}
		})
	}
}
