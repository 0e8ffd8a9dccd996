package ops

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/valyala/fasthttp"
)

// Membership endpoints (SPEC §2):
//
//	POST   /v1/cluster/members                 {"name","peer","client"} add a learner
//	POST   /v1/cluster/members/<name>/promote  make a learner a voter
//	DELETE /v1/cluster/members/<name>          remove a member
//	POST   /v1/cluster/transfer-leader         {"to": "<name>"} move leadership
//
// Changes are made by the leader. A follower forwards the request to the
// leader over HTTP (to the leader's advertised client address, from the
// replicated member table) and relays its answer unchanged; the forwarded
// request carries ForwardedHeader, and a node that receives a forwarded
// request while not leading answers 503 instead of forwarding again, so a
// request is forwarded at most once. Refusals are JSON errors
// {"error","code"} with the status of the ClusterError the backend returns.

// ForwardedHeader marks a membership request forwarded by a follower; its
// value is the forwarding member's name.
const ForwardedHeader = "X-Edgekv-Forwarded"

// maxMembershipBodyBytes bounds a membership request body (a name and two
// addresses fit many times over).
const maxMembershipBodyBytes = 4 << 10

// AddMemberRequest is the body of POST /v1/cluster/members. Name, Peer and
// Client are SPEC §2's; ID, ClusterID and AutoPromote are sent by a node
// started with --join (ID: its member id in hex; without it the leader asks
// the node at Peer; ClusterID: refused if it is not this cluster's).
type AddMemberRequest struct {
	Name        string `json:"name"`
	Peer        string `json:"peer"`
	Client      string `json:"client"`
	ID          string `json:"id,omitempty"`
	ClusterID   string `json:"cluster_id,omitempty"`
	AutoPromote bool   `json:"auto_promote,omitempty"`
}

// MemberInfo is one member in a membership answer; ID is hex.
type MemberInfo struct {
	Name   string `json:"name"`
	ID     string `json:"id"`
	Peer   string `json:"peer"`
	Client string `json:"client"`
	Voter  bool   `json:"voter"`
}

// MembershipResult is the body of a successful membership change: the
// member changed (absent for a transfer) and the member table after it.
type MembershipResult struct {
	Member  *MemberInfo  `json:"member,omitempty"`
	Leader  string       `json:"leader,omitempty"`
	Members []MemberInfo `json:"members"`
}

// ClusterError is a refused membership request: Status is the HTTP status,
// Code the JSON error code, RetryAfter (when not zero) the Retry-After.
type ClusterError struct {
	Status     int
	Code       string
	Message    string
	RetryAfter time.Duration
}

func (e *ClusterError) Error() string { return e.Message }

// MembershipBackend is what the membership endpoints call; the runtime
// implements it. Every method is called on the leader (the handlers
// forward otherwise) and may still find it is no longer the leader.
type MembershipBackend interface {
	// Leader reports whether this node leads and, if not, the leader's
	// client address ("" when no leader or its address is unknown).
	Leader() (isLeader bool, leaderClient string)
	AddMember(ctx context.Context, req AddMemberRequest) (MembershipResult, error)
	PromoteMember(ctx context.Context, name string) (MembershipResult, error)
	RemoveMember(ctx context.Context, name string) (MembershipResult, error)
	// TransferLeader moves leadership to the voter named to (empty: the
	// most up-to-date other voter) and returns once it moved.
	TransferLeader(ctx context.Context, to string) (MembershipResult, error)
}

// MembershipHandlers serves the membership endpoints.
type MembershipHandlers struct {
	backend MembershipBackend
	self    string
	client  *fasthttp.Client
	timeout time.Duration
}

// NewMembershipHandlers returns the handlers; self is this node's name
// (the value of ForwardedHeader), timeout bounds a forwarded request.
func NewMembershipHandlers(b MembershipBackend, self string, timeout time.Duration) *MembershipHandlers {
	return &MembershipHandlers{
		backend: b, self: self, timeout: timeout,
		client: &fasthttp.Client{
			Name: "edgekv-forward", MaxConnsPerHost: 16,
			ReadTimeout: timeout, WriteTimeout: timeout, MaxResponseBodySize: 1 << 20,
			NoDefaultUserAgentHeader: true,
		},
	}
}

// Paths served, for registration with the HTTP layer.
const (
	MembersPath        = "/v1/cluster/members"
	MembersPrefix      = "/v1/cluster/members/"
	TransferLeaderPath = "/v1/cluster/transfer-leader"
)

// Members serves POST /v1/cluster/members.
func (h *MembershipHandlers) Members(ctx *fasthttp.RequestCtx) {
	if !ctx.IsPost() {
		methodNotAllowed(ctx, "POST")
		return
	}
	var req AddMemberRequest
	if err := decodeBody(ctx, &req); err != nil {
		writeClusterError(ctx, err)
		return
	}
	if req.Name == "" || req.Peer == "" {
		writeClusterError(ctx, BadRequest("name and peer are required"))
		return
	}
	if h.forwarded(ctx) {
		return
	}
	res, err := h.backend.AddMember(ctx, req)
	h.answer(ctx, res, err)
}

// Member serves POST /v1/cluster/members/<name>/promote and
// DELETE /v1/cluster/members/<name>.
func (h *MembershipHandlers) Member(ctx *fasthttp.RequestCtx) {
	rest := strings.TrimPrefix(string(ctx.Path()), MembersPrefix)
	name, promote := strings.CutSuffix(rest, "/promote")
	if n, err := url.PathUnescape(name); err == nil {
		name = n
	}
	if name == "" || strings.Contains(name, "/") {
		writeClusterError(ctx, &ClusterError{Status: fasthttp.StatusNotFound, Code: "not_found", Message: "no such endpoint: " + string(ctx.Path())})
		return
	}
	switch {
	case promote && !ctx.IsPost():
		methodNotAllowed(ctx, "POST")
		return
	case !promote && !ctx.IsDelete():
		methodNotAllowed(ctx, "DELETE")
		return
	}
	if h.forwarded(ctx) {
		return
	}
	var res MembershipResult
	var err error
	if promote {
		res, err = h.backend.PromoteMember(ctx, name)
	} else {
		res, err = h.backend.RemoveMember(ctx, name)
	}
	h.answer(ctx, res, err)
}

// TransferLeader serves POST /v1/cluster/transfer-leader {"to": name}.
func (h *MembershipHandlers) TransferLeader(ctx *fasthttp.RequestCtx) {
	if !ctx.IsPost() {
		methodNotAllowed(ctx, "POST")
		return
	}
	var req struct {
		To string `json:"to"`
	}
	if len(ctx.PostBody()) > 0 {
		if err := decodeBody(ctx, &req); err != nil {
			writeClusterError(ctx, err)
			return
		}
	}
	if h.forwarded(ctx) {
		return
	}
	res, err := h.backend.TransferLeader(ctx, req.To)
	h.answer(ctx, res, err)
}

// BadRequest is a 400 ClusterError.
func BadRequest(format string, args ...any) *ClusterError {
	return &ClusterError{Status: fasthttp.StatusBadRequest, Code: "bad_request", Message: fmt.Sprintf(format, args...)}
}

func decodeBody(ctx *fasthttp.RequestCtx, v any) error {
	body := ctx.PostBody()
	if len(body) > maxMembershipBodyBytes {
		return &ClusterError{Status: fasthttp.StatusRequestEntityTooLarge, Code: "too_large", Message: fmt.Sprintf("body of %d bytes, at most %d", len(body), maxMembershipBodyBytes)}
	}
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return BadRequest("body: %v", err)
	}
	if dec.More() {
		return BadRequest("body: trailing data after the JSON object")
	}
	return nil
}

// forwarded relays the request to the leader when this node does not
// lead; it returns whether it answered.
func (h *MembershipHandlers) forwarded(ctx *fasthttp.RequestCtx) bool {
	isLeader, leader := h.backend.Leader()
	if isLeader {
		return false
	}
	if len(ctx.Request.Header.Peek(ForwardedHeader)) > 0 {
		writeClusterError(ctx, &ClusterError{Status: fasthttp.StatusServiceUnavailable, Code: "unavailable",
			Message: "forwarded to a member that no longer leads; retry", RetryAfter: time.Second})
		return true
	}
	if leader == "" {
		writeClusterError(ctx, &ClusterError{Status: fasthttp.StatusServiceUnavailable, Code: "unavailable",
			Message: "no leader known (or its client address not yet known); retry", RetryAfter: time.Second})
		return true
	}
	req := fasthttp.AcquireRequest()
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	ctx.Request.CopyTo(req)
	req.SetRequestURI("http://" + leader + string(ctx.Path()))
	req.Header.Set(ForwardedHeader, h.self)
	req.Header.Del(fasthttp.HeaderConnection)
	if err := h.client.DoTimeout(req, resp, h.timeout); err != nil {
		writeClusterError(ctx, &ClusterError{Status: fasthttp.StatusGatewayTimeout, Code: "timeout",
			Message: fmt.Sprintf("forwarding to the leader at %s: %v; the change may or may not have been made", leader, err)})
		return true
	}
	ctx.SetStatusCode(resp.StatusCode())
	ctx.SetContentType(string(resp.Header.ContentType()))
	if ra := resp.Header.Peek(fasthttp.HeaderRetryAfter); len(ra) > 0 {
		ctx.Response.Header.SetBytesV(fasthttp.HeaderRetryAfter, ra)
	}
	ctx.SetBody(resp.Body())
	return true
}

func (h *MembershipHandlers) answer(ctx *fasthttp.RequestCtx, res MembershipResult, err error) {
	if err != nil {
		writeClusterError(ctx, err)
		return
	}
	if res.Members == nil {
		res.Members = []MemberInfo{}
	}
	body, jerr := json.Marshal(&res)
	if jerr != nil {
		panic("ops: encoding membership result: " + jerr.Error()) // strings and bools only
	}
	ctx.SetContentType("application/json")
	ctx.SetStatusCode(fasthttp.StatusOK)
	ctx.SetBody(body)
}

func writeClusterError(ctx *fasthttp.RequestCtx, err error) {
	var ce *ClusterError
	if !errors.As(err, &ce) {
		ce = &ClusterError{Status: fasthttp.StatusInternalServerError, Code: "internal", Message: err.Error()}
	}
	body, _ := json.Marshal(struct {
		Error string `json:"error"`
		Code  string `json:"code"`
	}{ce.Message, ce.Code})
	if ce.RetryAfter > 0 {
		ctx.Response.Header.Set(fasthttp.HeaderRetryAfter, strconv.Itoa(max(1, int(ce.RetryAfter/time.Second))))
	}
	ctx.SetContentType("application/json")
	ctx.SetStatusCode(ce.Status)
	ctx.SetBody(body)
}

func methodNotAllowed(ctx *fasthttp.RequestCtx, allow string) {
	ctx.Response.Header.Set("Allow", allow)
	writeClusterError(ctx, &ClusterError{Status: fasthttp.StatusMethodNotAllowed, Code: "method_not_allowed", Message: allow + " only"})
}
