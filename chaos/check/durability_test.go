package check

import (
	"strings"
	"testing"

	"github.com/edgekv/edgekv/chaos/history"
)

func TestDurability(t *testing.T) {
	cases := []struct {
		name     string
		h        history.History
		want     Verdict
		lostWant int
	}{
		{"last acknowledged write visible", mk(
			put(0, "a", "v1", 0, 1, 1),
			put(0, "a", "v2", 2, 3, 2),
			final(get(1, "a", "v2", 2, 10, 11)),
		), Ok, 0},
		{"lost acknowledged write", mk(
			put(0, "a", "v1", 0, 1, 1),
			put(0, "a", "v2", 2, 3, 2),
			final(get(1, "a", "v1", 1, 10, 11)),
		), Illegal, 1},
		{"lost acknowledged write, key gone", mk(
			put(0, "a", "v1", 0, 1, 1),
			final(getAbsent(1, "a", 10, 11)),
		), Illegal, 1},
		{"concurrent acknowledged write may have replaced it", mk(
			put(0, "a", "v1", 0, 5, 2),
			put(1, "a", "v2", 1, 4, 1),
			final(get(1, "a", "v1", 2, 10, 11)),
		), Ok, 0},
		{"later unknown write replaced it", mk(
			put(0, "a", "v1", 0, 1, 1),
			putUnknown(1, "a", "v2", 2, 3),
			final(get(1, "a", "v2", 2, 10, 11)),
		), Ok, 0},
		{"unknown delete replaced it", mk(
			put(0, "a", "v1", 0, 1, 1),
			unknown(del(1, "a", 2, 3, 0)),
			final(getAbsent(1, "a", 10, 11)),
		), Ok, 0},
		{"acknowledged delete undone", mk(
			put(0, "a", "v1", 0, 1, 1),
			del(1, "a", 2, 3, 2),
			final(get(1, "a", "v1", 1, 10, 11)),
		), Illegal, 1},
		{"failed write is no excuse", mk(
			put(0, "a", "v1", 0, 1, 1),
			casFailed(1, "a", "v2", 9, 2, 3),
			final(get(1, "a", "v2", 2, 10, 11)),
		), Illegal, 0},
		{"value never written", mk(
			put(0, "a", "v1", 0, 1, 1),
			final(get(1, "a", "ghost", 2, 10, 11)),
		), Illegal, 0},
		{"lost batch write", mk(
			batch(0, 0, 1, 3, bput("a", "a1"), bput("b", "b1")),
			final(get(1, "a", "a1", 3, 10, 11)),
			final(getAbsent(1, "b", 10, 11)),
		), Illegal, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res, err := Durability(tc.h)
			if err != nil {
				t.Fatal(err)
			}
			if res.Verdict != tc.want {
				t.Fatalf("verdict %s, want %s: %v", res.Verdict, tc.want, res.Violations)
			}
			lost := 0
			for _, v := range res.Violations {
				lost += len(v.Lost)
				if v.Reason == "" || !strings.Contains(v.String(), v.Key) {
					t.Errorf("violation without reason or key: %v", v)
				}
			}
			if lost != tc.lostWant {
				t.Fatalf("%d lost writes reported, want %d: %v", lost, tc.lostWant, res.Violations)
			}
		})
	}
}

func TestDurabilityNeedsAFinalReadOfEveryKey(t *testing.T) {
	h := mk(put(0, "a", "v1", 0, 1, 1), put(0, "b", "w1", 0, 1, 2), final(get(1, "a", "v1", 1, 10, 11)))
	if _, err := Durability(h); err == nil || !strings.Contains(err.Error(), `"b"`) {
		t.Fatalf("want an error naming key b, got %v", err)
	}
	h = mk(put(0, "a", "v1", 0, 1, 1), final(get(1, "a", "v1", 1, 10, 11)), final(get(1, "a", "v1", 1, 12, 13)))
	if _, err := Durability(h); err == nil {
		t.Fatal("two final reads of one key accepted")
	}
}
