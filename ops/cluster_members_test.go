package ops

import (
	"bufio"
	"context"
	"encoding/json"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// fakeMembership records calls and answers with err (nil: success).
type fakeMembership struct {
	mu       sync.Mutex
	leader   bool
	leaderAt string
	err      error
	calls    []string
}

func (f *fakeMembership) Leader() (bool, string) { return f.leader, f.leaderAt }

func (f *fakeMembership) record(call string) (MembershipResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, call)
	if f.err != nil {
		return MembershipResult{}, f.err
	}
	return MembershipResult{Leader: "n1", Members: []MemberInfo{{Name: "n1", ID: "01", Voter: true}}}, nil
}

func (f *fakeMembership) AddMember(_ context.Context, r AddMemberRequest) (MembershipResult, error) {
	return f.record("add " + r.Name + " " + r.Peer + " " + r.Client + " " + r.ID)
}
func (f *fakeMembership) PromoteMember(_ context.Context, name string) (MembershipResult, error) {
	return f.record("promote " + name)
}
func (f *fakeMembership) RemoveMember(_ context.Context, name string) (MembershipResult, error) {
	return f.record("remove " + name)
}
func (f *fakeMembership) TransferLeader(_ context.Context, to string) (MembershipResult, error) {
	return f.record("transfer " + to)
}

func (f *fakeMembership) lastCall() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.calls) == 0 {
		return ""
	}
	return f.calls[len(f.calls)-1]
}

func newBodyCtx(tb testing.TB, method, target, body string, headers ...string) *fasthttp.RequestCtx {
	tb.Helper()
	var ctx fasthttp.RequestCtx
	raw := method + " " + target + " HTTP/1.1\r\nHost: h\r\n"
	for i := 0; i+1 < len(headers); i += 2 {
		raw += headers[i] + ": " + headers[i+1] + "\r\n"
	}
	raw += "Content-Length: " + itoa(len(body)) + "\r\n\r\n" + body
	if err := ctx.Request.Read(bufio.NewReader(strings.NewReader(raw))); err != nil {
		tb.Fatal(err)
	}
	return &ctx
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}

// route dispatches like the server's registration does.
func route(h *MembershipHandlers, ctx *fasthttp.RequestCtx) {
	switch p := string(ctx.Path()); {
	case p == MembersPath:
		h.Members(ctx)
	case p == TransferLeaderPath:
		h.TransferLeader(ctx)
	case strings.HasPrefix(p, MembersPrefix):
		h.Member(ctx)
	}
}

func errorCode(t *testing.T, ctx *fasthttp.RequestCtx) string {
	t.Helper()
	var e struct{ Error, Code string }
	if err := json.Unmarshal(ctx.Response.Body(), &e); err != nil || e.Error == "" || e.Code == "" {
		t.Fatalf("error body %q is not {error, code}: %v", ctx.Response.Body(), err)
	}
	return e.Code
}

func TestMembershipHandlersOnTheLeader(t *testing.T) {
	f := &fakeMembership{leader: true}
	h := NewMembershipHandlers(f, "n1", time.Second)
	for _, c := range []struct {
		method, target, body string
		status               int
		call, code           string
	}{
		{"POST", "/v1/cluster/members", `{"name":"n4","peer":"h:1","client":"h:2"}`, 200, "add n4 h:1 h:2 ", ""},
		{"POST", "/v1/cluster/members", `{"name":"n4","peer":"h:1","id":"ab","auto_promote":true}`, 200, "add n4 h:1  ab", ""},
		{"POST", "/v1/cluster/members/n4/promote", "", 200, "promote n4", ""},
		{"DELETE", "/v1/cluster/members/n%2D4", "", 200, "remove n-4", ""},
		{"POST", "/v1/cluster/transfer-leader", `{"to":"n2"}`, 200, "transfer n2", ""},
		{"POST", "/v1/cluster/transfer-leader", ``, 200, "transfer ", ""},
		{"POST", "/v1/cluster/members", `{"name":"n4"}`, 400, "", "bad_request"},
		{"POST", "/v1/cluster/members", `{"name":"n4","peer":"h:1"} {}`, 400, "", "bad_request"},
		{"POST", "/v1/cluster/members", `{"name":"n4","peer":"h:1","bogus":1}`, 400, "", "bad_request"},
		{"POST", "/v1/cluster/members", `[`, 400, "", "bad_request"},
		{"POST", "/v1/cluster/members", `{"name":"` + strings.Repeat("x", maxMembershipBodyBytes) + `"}`, 413, "", "too_large"},
		{"GET", "/v1/cluster/members", "", 405, "", "method_not_allowed"},
		{"DELETE", "/v1/cluster/members/n4/promote", "", 405, "", "method_not_allowed"},
		{"POST", "/v1/cluster/members/n4", "", 405, "", "method_not_allowed"},
		{"DELETE", "/v1/cluster/members/a/b", "", 404, "", "not_found"},
		{"DELETE", "/v1/cluster/members/", "", 404, "", "not_found"},
		{"GET", "/v1/cluster/transfer-leader", "", 405, "", "method_not_allowed"},
	} {
		f.calls = nil
		ctx := newBodyCtx(t, c.method, c.target, c.body)
		route(h, ctx)
		if got := ctx.Response.StatusCode(); got != c.status {
			t.Errorf("%s %s %s: status %d %s, want %d", c.method, c.target, c.body, got, ctx.Response.Body(), c.status)
			continue
		}
		if got := f.lastCall(); got != c.call {
			t.Errorf("%s %s: backend call %q, want %q", c.method, c.target, got, c.call)
		}
		if c.code != "" {
			if code := errorCode(t, ctx); code != c.code {
				t.Errorf("%s %s: code %q, want %q", c.method, c.target, code, c.code)
			}
		} else if !strings.Contains(string(ctx.Response.Body()), `"members":[`) {
			t.Errorf("%s %s: body %s", c.method, c.target, ctx.Response.Body())
		}
	}
	// A refusal keeps its status, code and Retry-After.
	f.err = &ClusterError{Status: 409, Code: "change_pending", Message: "busy"}
	ctx := newBodyCtx(t, "POST", "/v1/cluster/members/n4/promote", "")
	route(h, ctx)
	if ctx.Response.StatusCode() != 409 || errorCode(t, ctx) != "change_pending" {
		t.Fatalf("refusal: %d %s", ctx.Response.StatusCode(), ctx.Response.Body())
	}
	f.err = &ClusterError{Status: 503, Code: "unavailable", Message: "later", RetryAfter: 2 * time.Second}
	ctx = newBodyCtx(t, "DELETE", "/v1/cluster/members/n4", "")
	route(h, ctx)
	if ctx.Response.StatusCode() != 503 || string(ctx.Response.Header.Peek("Retry-After")) != "2" {
		t.Fatalf("503: %d Retry-After %q", ctx.Response.StatusCode(), ctx.Response.Header.Peek("Retry-After"))
	}
}

// TestMembershipHandlersForwardToTheLeader: a follower relays the request
// to the leader's client address, marked as forwarded, and relays the
// answer; a forwarded request reaching a non-leader is not forwarded
// again; with no leader known the answer is 503.
func TestMembershipHandlersForwardToTheLeader(t *testing.T) {
	leaderBackend := &fakeMembership{leader: true}
	leaderHandlers := NewMembershipHandlers(leaderBackend, "n1", time.Second)
	var forwardedBy []string
	var mu sync.Mutex
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		mu.Lock()
		forwardedBy = append(forwardedBy, string(ctx.Request.Header.Peek(ForwardedHeader)))
		mu.Unlock()
		route(leaderHandlers, ctx)
	}}
	go srv.Serve(ln)
	defer srv.Shutdown()

	follower := NewMembershipHandlers(&fakeMembership{leaderAt: ln.Addr().String()}, "n2", 2*time.Second)
	ctx := newBodyCtx(t, "POST", "/v1/cluster/members", `{"name":"n4","peer":"h:1","client":"h:2"}`)
	route(follower, ctx)
	if ctx.Response.StatusCode() != 200 || leaderBackend.lastCall() != "add n4 h:1 h:2 " {
		t.Fatalf("forwarded add: %d %s, leader saw %q", ctx.Response.StatusCode(), ctx.Response.Body(), leaderBackend.lastCall())
	}
	leaderBackend.err = &ClusterError{Status: 404, Code: "unknown_member", Message: "no such member"}
	ctx = newBodyCtx(t, "DELETE", "/v1/cluster/members/zz", "")
	route(follower, ctx)
	if ctx.Response.StatusCode() != 404 || errorCode(t, ctx) != "unknown_member" || leaderBackend.lastCall() != "remove zz" {
		t.Fatalf("forwarded refusal: %d %s", ctx.Response.StatusCode(), ctx.Response.Body())
	}
	mu.Lock()
	if len(forwardedBy) != 2 || forwardedBy[0] != "n2" {
		t.Fatalf("forwarded header %q", forwardedBy)
	}
	mu.Unlock()

	// A forwarded request at a member that does not lead: 503, no loop.
	stale := NewMembershipHandlers(&fakeMembership{leaderAt: ln.Addr().String()}, "n3", time.Second)
	ctx = newBodyCtx(t, "POST", "/v1/cluster/members/n4/promote", "", ForwardedHeader, "n2")
	route(stale, ctx)
	if ctx.Response.StatusCode() != 503 || len(ctx.Response.Header.Peek("Retry-After")) == 0 {
		t.Fatalf("forwarded to a non-leader: %d %s", ctx.Response.StatusCode(), ctx.Response.Body())
	}
	// No leader known.
	none := NewMembershipHandlers(&fakeMembership{}, "n3", time.Second)
	ctx = newBodyCtx(t, "POST", "/v1/cluster/transfer-leader", `{"to":"n1"}`)
	route(none, ctx)
	if ctx.Response.StatusCode() != 503 || errorCode(t, ctx) != "unavailable" {
		t.Fatalf("no leader: %d %s", ctx.Response.StatusCode(), ctx.Response.Body())
	}
	// The leader's address does not answer: 504, outcome unknown.
	dead, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := dead.Addr().String()
	dead.Close()
	gone := NewMembershipHandlers(&fakeMembership{leaderAt: addr}, "n3", time.Second)
	ctx = newBodyCtx(t, "DELETE", "/v1/cluster/members/n4", "")
	route(gone, ctx)
	if ctx.Response.StatusCode() != 504 || errorCode(t, ctx) != "timeout" {
		t.Fatalf("leader unreachable: %d %s", ctx.Response.StatusCode(), ctx.Response.Body())
	}
}

// FuzzMembershipRequest: any body and path gets a JSON answer with a
// status the endpoints document, never a panic.
func FuzzMembershipRequest(f *testing.F) {
	f.Add("POST", "/v1/cluster/members", `{"name":"n4","peer":"h:1","client":"h:2"}`)
	f.Add("POST", "/v1/cluster/transfer-leader", `{"to":"n2"}`)
	f.Add("DELETE", "/v1/cluster/members/n%ZZ", "")
	f.Add("POST", "/v1/cluster/members", `{"name":null,"peer":1}`)
	h := NewMembershipHandlers(&fakeMembership{leader: true}, "n1", time.Second)
	f.Fuzz(func(t *testing.T, method, path, body string) {
		if method != "POST" && method != "DELETE" && method != "GET" {
			return
		}
		target := MembersPrefix + strings.Map(func(r rune) rune {
			if r <= ' ' || r == 0x7f || r > 0x7e {
				return -1
			}
			return r
		}, path)
		var ctx fasthttp.RequestCtx
		ctx.Request.Header.SetMethod(method)
		ctx.Request.SetRequestURI(target)
		ctx.Request.SetBodyString(body)
		for _, p := range []string{MembersPath, TransferLeaderPath, target} {
			ctx.Request.SetRequestURI(p)
			ctx.Response.Reset()
			route(h, &ctx)
			switch ctx.Response.StatusCode() {
			case 200, 400, 404, 405, 413:
			default:
				t.Fatalf("%s %s %q: status %d", method, p, body, ctx.Response.StatusCode())
			}
			if !json.Valid(ctx.Response.Body()) {
				t.Fatalf("%s %s: body %q is not JSON", method, p, ctx.Response.Body())
			}
		}
	})
}
