package check

import (
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/edgekv/edgekv/chaos/model"
)

// TestRefinementsKeepTheVerdict cross-checks model.Operations (which bounds
// or drops some Unknown writes) against the plain translation on small
// histories, correct and faulty, with many Unknown outcomes: the verdicts
// must agree whenever both finish.
func TestRefinementsKeepTheVerdict(t *testing.T) {
	m := model.New()
	var compared, illegal, refinedFaster int
	for _, f := range append([]fault{noFault}, allFaults...) {
		for seed := uint64(0); seed < 6; seed++ {
			cfg := genConfig{ops: 40, clients: 5, groups: 1, keysPer: 3, unknownRate: 0.25, spanTicks: 10, fault: f}
			h, _ := generate(seed, cfg)
			start := time.Now()
			refined := porcupine.CheckOperationsTimeout(m, model.Operations(h), time.Second)
			tRefined := time.Since(start)
			start = time.Now()
			raw := porcupine.CheckOperationsTimeout(m, model.RawOperations(h), time.Second)
			tRaw := time.Since(start)
			if refined == porcupine.Unknown || raw == porcupine.Unknown {
				continue
			}
			compared++
			if refined != raw {
				t.Fatalf("fault %q seed %d: refined %s, plain %s", f, seed, refined, raw)
			}
			if refined == porcupine.Illegal {
				illegal++
			}
			if tRefined < tRaw {
				refinedFaster++
			}
		}
	}
	if compared < 30 || illegal == 0 {
		t.Fatalf("only %d comparisons (%d illegal)", compared, illegal)
	}
	t.Logf("%d histories compared (%d illegal), refined check faster in %d", compared, illegal, refinedFaster)
}
