package zz

import (
	"fmt"
	"os"
	"strconv"
	"testing"

	"github.com/edgekv/edgekv/chaos/history"
	"github.com/edgekv/edgekv/chaos/model"
)

func TestDump(t *testing.T) {
	h, err := history.ReadFile(os.Getenv("HIST"))
	if err != nil {
		t.Fatal(err)
	}
	m := model.New()
	ops := model.Operations(h)
	lo, _ := strconv.Atoi(os.Getenv("LO"))
	hi, _ := strconv.Atoi(os.Getenv("HI"))
	for _, q := range m.Partition(ops) {
		match := false
		for _, k := range q[0].Input.(*history.Op).Keys() {
			match = match || k == os.Getenv("KEY")
		}
		if !match {
			continue
		}
		for i, o := range q {
			if i < lo || i >= hi {
				continue
			}
			op := o.Input.(*history.Op)
			ret := "inf"
			if o.Return < 1<<62 {
				ret = fmt.Sprintf("%.3f", float64(o.Return)/1e9)
			}
			fmt.Printf("%3d [%.3f..%s] %s node=%s err=%s\n", i, float64(o.Call)/1e9, ret, op, op.Node, op.Err)
		}
	}
}
