package check

import (
	"sort"

	"github.com/edgekv/edgekv/chaos/history"
)

// Builders of synthetic ops. Times are arbitrary ticks; every helper
// returns an Op whose ID mk assigns.

func put(c int, key, val string, call, ret, rev int64) history.Op {
	return history.Op{Client: c, Kind: history.Put, Key: key, Value: val, Call: call, Return: ret, Outcome: history.OK, Code: 200, Rev: rev}
}

func putUnknown(c int, key, val string, call, ret int64) history.Op {
	return history.Op{Client: c, Kind: history.Put, Key: key, Value: val, Call: call, Return: ret, Outcome: history.Unknown, Code: 504}
}

func cas(c int, key, val string, ifMatch, call, ret, rev int64) history.Op {
	o := put(c, key, val, call, ret, rev)
	o.Cond.IfMatch = ifMatch
	return o
}

func casFailed(c int, key, val string, ifMatch, call, ret int64) history.Op {
	o := cas(c, key, val, ifMatch, call, ret, 0)
	o.Outcome, o.Code = history.Fail, 412
	return o
}

func casUnknown(c int, key, val string, ifMatch, call, ret int64) history.Op {
	o := cas(c, key, val, ifMatch, call, ret, 0)
	o.Outcome, o.Code = history.Unknown, 0
	return o
}

func get(c int, key, val string, rev, call, ret int64) history.Op {
	return history.Op{Client: c, Kind: history.Get, Key: key, Consistency: history.Linearizable, Call: call, Return: ret,
		Outcome: history.OK, Code: 200, Found: true, ReadValue: val, Rev: rev}
}

func getAbsent(c int, key string, call, ret int64) history.Op {
	return history.Op{Client: c, Kind: history.Get, Key: key, Consistency: history.Linearizable, Call: call, Return: ret,
		Outcome: history.OK, Code: 404}
}

func del(c int, key string, call, ret, rev int64) history.Op {
	return history.Op{Client: c, Kind: history.Delete, Key: key, Call: call, Return: ret, Outcome: history.OK, Code: 200, Rev: rev}
}

func batch(c int, call, ret, rev int64, ops ...history.BatchOp) history.Op {
	return history.Op{Client: c, Kind: history.Batch, Ops: ops, Call: call, Return: ret, Outcome: history.OK, Code: 200, Rev: rev}
}

func bput(key, val string) history.BatchOp {
	return history.BatchOp{Op: history.Put, Key: key, Value: val}
}

func list(c int, prefix string, call, ret, storeRev int64, items ...history.Item) history.Op {
	return history.Op{Client: c, Kind: history.List, Prefix: prefix, Consistency: history.Linearizable, Call: call, Return: ret,
		Outcome: history.OK, Code: 200, Items: items, StoreRev: storeRev}
}

func final(o history.Op) history.Op {
	o.Final = true
	return o
}

func unknown(o history.Op) history.Op {
	o.Outcome, o.Code, o.Rev = history.Unknown, 504, 0
	return o
}

// mk sorts ops by call time and numbers them.
func mk(ops ...history.Op) history.History {
	h := history.History(ops)
	sort.SliceStable(h, func(i, j int) bool { return h[i].Call < h[j].Call })
	for i := range h {
		h[i].ID = i
	}
	return h
}
