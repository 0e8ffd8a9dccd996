package ops

import (
	"encoding/json"
	"sort"

	"github.com/valyala/fasthttp"
)

// ClusterStatus is the body of GET /v1/cluster, field for field as SPEC §2
// shows it. The runtime fills it; ClusterHandler encodes it.
type ClusterStatus struct {
	Name         string         `json:"name"`   // this node
	Leader       string         `json:"leader"` // leader's name, empty when none is known
	Term         uint64         `json:"term"`
	CommitIndex  uint64         `json:"commit_index"`
	AppliedIndex uint64         `json:"applied_index"`
	Members      []MemberStatus `json:"members"`
}

// MemberStatus is one member in ClusterStatus. MatchIndex and Lag are
// what the leader knows; on a follower they are what it last heard (or
// zero).
type MemberStatus struct {
	Name       string `json:"name"`
	Peer       string `json:"peer"`   // advertised peer address
	Client     string `json:"client"` // advertised client address
	Voter      bool   `json:"voter"`  // false: learner
	Reachable  bool   `json:"reachable"`
	MatchIndex uint64 `json:"match_index"`
	Lag        uint64 `json:"lag"` // entries behind the leader's last index
}

// ClusterHandler serves GET (and HEAD) /v1/cluster from fill, which the
// runtime implements by copying its current view into the ClusterStatus it
// is given. Members are sorted by name; an empty list is written as [].
// Other methods get 405: the membership endpoints under /v1/cluster/ are
// separate handlers.
func ClusterHandler(fill func(*ClusterStatus)) fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		if !ctx.IsGet() && !ctx.IsHead() {
			ctx.Response.Header.Set("Allow", "GET, HEAD")
			ctx.SetContentType("application/json")
			ctx.SetStatusCode(fasthttp.StatusMethodNotAllowed)
			ctx.SetBodyString(`{"error":"GET /v1/cluster only","code":"method_not_allowed"}`)
			return
		}
		var s ClusterStatus
		fill(&s)
		if s.Members == nil {
			s.Members = []MemberStatus{}
		}
		sort.Slice(s.Members, func(i, j int) bool { return s.Members[i].Name < s.Members[j].Name })
		body, err := json.Marshal(&s)
		if err != nil {
			// Only strings and integers: Marshal cannot fail on them.
			panic("ops: encoding cluster status: " + err.Error())
		}
		ctx.SetContentType("application/json")
		ctx.SetStatusCode(fasthttp.StatusOK)
		ctx.SetBody(body)
	}
}
