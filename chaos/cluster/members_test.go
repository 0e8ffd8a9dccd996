package cluster

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestMembershipAsksTheOtherMembers: whether member n2 was removed is
// answered by the others' applied member tables (GET /v1/cluster), never
// by n2 itself, which may not know (the nemesis' check after a removal
// answered 504).
func TestMembershipAsksTheOtherMembers(t *testing.T) {
	serve := func(members ...string) *httptest.Server {
		return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/v1/cluster" {
				http.NotFound(w, r)
				return
			}
			var list []string
			for _, m := range members {
				list = append(list, fmt.Sprintf(`{"name":%q}`, m))
			}
			fmt.Fprintf(w, `{"name":"x","leader":"n1","term":7,"members":[%s]}`, strings.Join(list, ","))
		}))
	}
	cases := []struct {
		name                      string
		n1, n2, n3                []string
		listed, removed, answered bool
	}{
		{"everyone lists it", []string{"n1", "n2", "n3"}, []string{"n1", "n2", "n3"}, []string{"n1", "n2", "n3"}, true, false, true},
		{"the leader applied the removal", []string{"n1", "n3"}, []string{"n1", "n2", "n3"}, []string{"n1", "n2", "n3"}, true, true, true},
		{"both others applied it, n2 does not know", []string{"n1", "n3"}, []string{"n1", "n2", "n3"}, []string{"n1", "n3"}, false, true, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := &Cluster{probe: &http.Client{Timeout: 5 * time.Second}}
			for i, members := range [][]string{tc.n1, tc.n2, tc.n3} {
				srv := serve(members...)
				defer srv.Close()
				c.nodes = append(c.nodes, &Node{Name: fmt.Sprintf("n%d", i+1), Index: i,
					Client: strings.TrimPrefix(srv.URL, "http://"), proc: &process{}})
			}
			listed, removed, answered := c.Membership(context.Background(), 1)
			if listed != tc.listed || removed != tc.removed || answered != tc.answered {
				t.Fatalf("Membership(n2) = listed %v removed %v answered %v, want %v %v %v",
					listed, removed, answered, tc.listed, tc.removed, tc.answered)
			}
		})
	}
	t.Run("nobody else running", func(t *testing.T) {
		srv := serve("n1", "n2")
		defer srv.Close()
		c := &Cluster{probe: &http.Client{Timeout: 5 * time.Second}, nodes: []*Node{
			{Name: "n1", Index: 0, Client: "127.0.0.1:1"}, // not running: not asked
			{Name: "n2", Index: 1, Client: strings.TrimPrefix(srv.URL, "http://"), proc: &process{}},
		}}
		if listed, removed, answered := c.Membership(context.Background(), 1); listed || removed || answered {
			t.Fatalf("Membership(n2) = %v %v %v with no other member running, want all false", listed, removed, answered)
		}
	})
}
