package ops

import (
	"encoding/json"
	"reflect"
	"testing"
)

func TestClusterHandlerShape(t *testing.T) {
	h := ClusterHandler(func(s *ClusterStatus) {
		*s = ClusterStatus{
			Name: "n1", Leader: "n2", Term: 7, CommitIndex: 100, AppliedIndex: 99,
			Members: []MemberStatus{
				{Name: "n2", Peer: "10.0.0.2:7380", Client: "10.0.0.2:7379", Voter: true, Reachable: true, MatchIndex: 100},
				{Name: "n1", Peer: "10.0.0.1:7380", Client: "10.0.0.1:7379", Voter: true, Reachable: true, MatchIndex: 98, Lag: 2},
			},
		}
	})
	ctx := newCtx(t, "GET", "/v1/cluster")
	h(ctx)
	if ctx.Response.StatusCode() != 200 || string(ctx.Response.Header.ContentType()) != "application/json" {
		t.Fatalf("status %d, content type %q", ctx.Response.StatusCode(), ctx.Response.Header.ContentType())
	}
	// Decode generically: the keys must be exactly SPEC §2's.
	var got map[string]any
	if err := json.Unmarshal(ctx.Response.Body(), &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"name": "n1", "leader": "n2", "term": 7.0, "commit_index": 100.0, "applied_index": 99.0,
		"members": []any{
			map[string]any{"name": "n1", "peer": "10.0.0.1:7380", "client": "10.0.0.1:7379", "voter": true, "reachable": true, "match_index": 98.0, "lag": 2.0},
			map[string]any{"name": "n2", "peer": "10.0.0.2:7380", "client": "10.0.0.2:7379", "voter": true, "reachable": true, "match_index": 100.0, "lag": 0.0},
		},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got  %v\nwant %v", got, want)
	}

	empty := ClusterHandler(func(s *ClusterStatus) { s.Name = "n1" })
	ctx = newCtx(t, "GET", "/v1/cluster")
	empty(ctx)
	if want := `{"name":"n1","leader":"","term":0,"commit_index":0,"applied_index":0,"members":[]}`; string(ctx.Response.Body()) != want {
		t.Fatalf("empty status: %s, want %s", ctx.Response.Body(), want)
	}
	ctx = newCtx(t, "POST", "/v1/cluster")
	empty(ctx)
	if ctx.Response.StatusCode() != 405 || string(ctx.Response.Header.Peek("Allow")) != "GET, HEAD" {
		t.Fatalf("POST: status %d, Allow %q", ctx.Response.StatusCode(), ctx.Response.Header.Peek("Allow"))
	}
}
