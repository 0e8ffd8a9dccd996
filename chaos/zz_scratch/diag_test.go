package zz

import (
	"os"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/edgekv/edgekv/chaos/history"
	"github.com/edgekv/edgekv/chaos/model"
)

func TestDiag(t *testing.T) {
	h, err := history.ReadFile(os.Getenv("HIST"))
	if err != nil {
		t.Fatal(err)
	}
	m := model.New()
	ops := model.Operations(h)
	for i, p := range m.Partition(ops) {
		unk := 0
		for _, o := range p {
			if o.Output.(*history.Op).Outcome == history.Unknown {
				unk++
			}
		}
		start := time.Now()
		single := porcupine.Model{Init: m.Init, Step: m.Step, Equal: m.Equal, DescribeOperation: m.DescribeOperation, DescribeState: m.DescribeState}
		res := porcupine.CheckOperationsTimeout(single, p, 20*time.Second)
		t.Logf("partition %d: %d ops, %d unknown: %v in %v (key %v)", i, len(p), unk, res, time.Since(start), p[0].Input.(*history.Op).Keys())
	}
}
