package check

import (
	"testing"
	"time"

	"github.com/edgekv/edgekv/chaos/history"
)

func linVerdict(t *testing.T, h history.History) Verdict {
	t.Helper()
	if err := h.Validate(); err != nil {
		t.Fatalf("bad synthetic history: %v", err)
	}
	return Linearizability(h, Config{Timeout: 10 * time.Second}).Verdict
}

func TestLinearizableHistoriesPass(t *testing.T) {
	cases := map[string]history.History{
		"sequential": mk(
			getAbsent(0, "a", 0, 1),
			put(0, "a", "v1", 2, 3, 1),
			get(1, "a", "v1", 1, 4, 5),
			put(1, "a", "v2", 6, 7, 2),
			get(0, "a", "v2", 2, 8, 9),
			del(0, "a", 10, 11, 3),
			getAbsent(1, "a", 12, 13),
		),
		"concurrent puts and a read between them": mk(
			put(0, "a", "v1", 0, 10, 1),
			put(1, "a", "v2", 5, 15, 2),
			get(2, "a", "v1", 1, 11, 12), // v2's put linearizes after 12
			get(2, "a", "v2", 2, 16, 17),
		),
		"read concurrent with a write sees either": mk(
			put(0, "a", "v1", 0, 1, 1),
			put(1, "a", "v2", 2, 10, 2),
			get(2, "a", "v1", 1, 3, 4),
			get(3, "a", "v2", 2, 5, 6),
		),
		"unknown write that took effect, read later": mk(
			put(0, "a", "v1", 0, 1, 4),
			putUnknown(1, "a", "v2", 2, 3),
			get(2, "a", "v2", 9, 20, 21), // revision learnt from the read
			cas(2, "a", "v3", 9, 22, 23, 12),
		),
		"unknown write that never took effect": mk(
			put(0, "a", "v1", 0, 1, 1),
			putUnknown(1, "a", "v2", 2, 3),
			get(2, "a", "v1", 1, 20, 21),
			get(2, "a", "v1", 1, 22, 23),
		),
		"unknown write taking effect after a later read": mk(
			put(0, "a", "v1", 0, 1, 1),
			putUnknown(1, "a", "v2", 2, 3),
			get(2, "a", "v1", 1, 20, 21),
			get(2, "a", "v2", 7, 30, 31),
		),
		"cas against current revision and a stale one": mk(
			put(0, "a", "v1", 0, 1, 5),
			cas(0, "a", "v2", 5, 2, 3, 8),
			casFailed(1, "a", "v3", 5, 4, 5),
			get(1, "a", "v2", 8, 6, 7),
		),
		"unknown cas against an unbound revision, both ways": mk(
			putUnknown(0, "a", "v1", 0, 1),
			casUnknown(1, "a", "v2", 3, 2, 3),
			casUnknown(2, "b", "w2", 3, 2, 3),
			get(3, "a", "v2", 4, 10, 11), // v1 got revision 3, the cas 4
		),
		"batch seen whole, revisions equal": mk(
			put(0, "a", "a0", 0, 1, 1),
			batch(1, 2, 3, 7, bput("a", "a1"), bput("b", "b1")),
			get(2, "a", "a1", 7, 4, 5),
			get(2, "b", "b1", 7, 6, 7),
			list(3, "", 8, 9, 7, history.Item{Key: "a", Value: "a1", Rev: 7}, history.Item{Key: "b", Value: "b1", Rev: 7}),
		),
		"unknown batch seen whole": mk(
			unknown(batch(1, 2, 3, 0, bput("a", "a1"), bput("b", "b1"))),
			list(3, "", 8, 9, 0),
			list(3, "", 10, 11, 0, history.Item{Key: "a", Value: "a1", Rev: 2}, history.Item{Key: "b", Value: "b1", Rev: 2}),
		),
		"store revision from other partitions": mk(
			put(0, "a", "v1", 0, 1, 10),
			put(0, "b", "w1", 2, 3, 20),
			put(0, "a", "v2", 4, 5, 30),
		),
	}
	for name, h := range cases {
		t.Run(name, func(t *testing.T) {
			if v := linVerdict(t, h); v != Ok {
				t.Fatalf("verdict %s, want ok", v)
			}
		})
	}
}

func TestViolationsAreReported(t *testing.T) {
	cases := map[string]history.History{
		"stale read after an acknowledged write completed": mk(
			put(0, "a", "v1", 0, 1, 1),
			put(0, "a", "v2", 2, 3, 2),
			get(1, "a", "v1", 1, 4, 5),
		),
		"lost acknowledged write seen by the final read": mk(
			put(0, "a", "v1", 0, 1, 1),
			final(getAbsent(1, "a", 10, 11)),
		),
		"cas succeeded against a revision that was not current": mk(
			put(0, "a", "v1", 0, 1, 1),
			put(0, "a", "v2", 2, 3, 2),
			cas(1, "a", "v3", 1, 4, 5, 3),
		),
		"cas failed against the current revision": mk(
			put(0, "a", "v1", 0, 1, 1),
			casFailed(1, "a", "v3", 1, 4, 5),
		),
		"batch partially visible at one point in time": mk(
			batch(0, 0, 1, 5, bput("a", "a1"), bput("b", "b1")),
			list(1, "", 2, 3, 5, history.Item{Key: "a", Value: "a1", Rev: 5}),
		),
		"unknown batch partially visible at one point in time": mk(
			unknown(batch(0, 0, 1, 0, bput("a", "a1"), bput("b", "b1"))),
			list(1, "", 2, 3, 0, history.Item{Key: "a", Value: "a1", Rev: 5}),
		),
		"batch partially visible to successive reads": mk(
			unknown(batch(0, 0, 1, 0, bput("a", "a1"), bput("b", "b1"))),
			get(1, "a", "a1", 5, 2, 3),
			getAbsent(1, "b", 4, 5),
		),
		"batch keys at different revisions": mk(
			batch(0, 0, 1, 5, bput("a", "a1"), bput("b", "b1")),
			get(1, "a", "a1", 5, 2, 3),
			get(1, "b", "b1", 6, 4, 5),
		),
		"read of a value never written": mk(
			put(0, "a", "v1", 0, 1, 1),
			get(1, "a", "ghost", 1, 2, 3),
		),
		"revision going backwards on one key (writes)": mk(
			put(0, "a", "v1", 0, 1, 5),
			put(0, "a", "v2", 2, 3, 3),
		),
		"revision going backwards on one key (reads)": mk(
			put(0, "a", "v1", 0, 1, 5),
			get(1, "a", "v1", 5, 2, 3),
			get(1, "a", "v1", 4, 4, 5),
		),
		"read revision differs from its write's": mk(
			put(0, "a", "v1", 0, 1, 5),
			get(1, "a", "v1", 6, 2, 3),
		),
		"store revision going backwards": mk(
			put(0, "a", "v1", 0, 1, 5),
			list(1, "", 2, 3, 4, history.Item{Key: "a", Value: "v1", Rev: 5}),
		),
		"unknown write's revision below an earlier write": mk(
			put(0, "a", "v1", 0, 1, 5),
			putUnknown(1, "a", "v2", 2, 3),
			get(2, "a", "v2", 4, 10, 11),
		),
		"deleted key read back": mk(
			put(0, "a", "v1", 0, 1, 5),
			del(0, "a", 2, 3, 6),
			get(1, "a", "v1", 5, 4, 5),
		),
	}
	for name, h := range cases {
		t.Run(name, func(t *testing.T) {
			if v := linVerdict(t, h); v != Illegal {
				t.Fatalf("verdict %s, want illegal", v)
			}
		})
	}
}
