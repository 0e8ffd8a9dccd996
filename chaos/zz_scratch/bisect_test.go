package zz

import (
	"os"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/edgekv/edgekv/chaos/history"
	"github.com/edgekv/edgekv/chaos/model"
)

func TestBisect(t *testing.T) {
	h, err := history.ReadFile(os.Getenv("HIST"))
	if err != nil {
		t.Fatal(err)
	}
	m := model.New()
	ops := model.Operations(h)
	parts := m.Partition(ops)
	var p []porcupine.Operation
	for _, q := range parts {
		for _, k := range q[0].Input.(*history.Op).Keys() {
			if k == os.Getenv("KEY") {
				p = q
			}
		}
	}
	single := porcupine.Model{Init: m.Init, Step: m.Step, Equal: m.Equal, DescribeOperation: m.DescribeOperation, DescribeState: m.DescribeState}
	step := 10
	for n := step; n <= len(p)+step-1; n += step {
		k := min(n, len(p))
		var sub []porcupine.Operation
		for _, o := range p {
			if o.Return <= p[k-1].Call || o.Call <= p[k-1].Call {
				sub = append(sub, o)
			}
		}
		start := time.Now()
		res := porcupine.CheckOperationsTimeout(single, sub, 10*time.Second)
		t.Logf("first %d: %v in %v", len(sub), res, time.Since(start))
		if res != porcupine.Ok {
			break
		}
	}
}
