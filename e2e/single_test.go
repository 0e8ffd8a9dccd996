package e2e

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func revisionOf(t *testing.T, body string) uint64 {
	t.Helper()
	var r struct {
		Revision uint64 `json:"revision"`
	}
	if err := json.Unmarshal([]byte(body), &r); err != nil || r.Revision == 0 {
		t.Fatalf("body %q has no revision: %v", body, err)
	}
	return r.Revision
}

type listBody struct {
	Items []struct {
		Key      string `json:"key"`
		Value    string `json:"value"`
		Revision uint64 `json:"revision"`
	} `json:"items"`
	More     bool   `json:"more"`
	Revision uint64 `json:"revision"`
}

func TestSingleNodeKeyValueAPI(t *testing.T) {
	p := start(t, nodeFlags(t, t.TempDir())...)
	p.waitReady()

	// put / get / ETag / revision header
	r := p.must(200, "PUT", "/v1/kv/greeting", "hello")
	rev := revisionOf(t, r.body)
	if r.header.Get("ETag") != fmt.Sprintf("%q", fmt.Sprint(rev)) {
		t.Fatalf("ETag %q for revision %d", r.header.Get("ETag"), rev)
	}
	g := p.must(200, "GET", "/v1/kv/greeting", "")
	if g.body != "hello" || g.header.Get("X-Edgekv-Revision") == "" {
		t.Fatalf("get: %q headers %v", g.body, g.header)
	}
	for _, c := range []string{"linearizable", "lease", "stale"} {
		if g := p.must(200, "GET", "/v1/kv/greeting?consistency="+c, ""); g.body != "hello" {
			t.Fatalf("%s read: %q", c, g.body)
		}
	}
	// A key with an encoded slash survives exactly.
	p.must(200, "PUT", "/v1/kv/a%2F..%2Fb", "slash")
	if g := p.must(200, "GET", "/v1/kv/a%2F..%2Fb", ""); g.body != "slash" {
		t.Fatalf("encoded key: %q", g.body)
	}

	// If-Match: 200 then 412; If-None-Match: *.
	r2 := p.must(200, "PUT", "/v1/kv/greeting", "v2", "If-Match", fmt.Sprintf("%q", fmt.Sprint(rev)))
	p.must(412, "PUT", "/v1/kv/greeting", "v3", "If-Match", fmt.Sprintf("%q", fmt.Sprint(rev)))
	p.must(412, "PUT", "/v1/kv/greeting", "v3", "If-None-Match", "*")
	p.must(200, "PUT", "/v1/kv/fresh", "x", "If-None-Match", "*")
	p.must(412, "DELETE", "/v1/kv/greeting", "", "If-Match", fmt.Sprintf("%q", fmt.Sprint(rev)))
	p.must(200, "DELETE", "/v1/kv/greeting", "", "If-Match", fmt.Sprintf("%q", fmt.Sprint(revisionOf(t, r2.body))))
	p.must(404, "GET", "/v1/kv/greeting", "")
	p.must(404, "DELETE", "/v1/kv/greeting", "")

	// Idempotency-Key: the retry returns the first revision, applies once.
	i1 := p.must(200, "PUT", "/v1/kv/idem", "once", "Idempotency-Key", "req-42")
	i2 := p.must(200, "PUT", "/v1/kv/idem", "once", "Idempotency-Key", "req-42")
	if revisionOf(t, i1.body) != revisionOf(t, i2.body) {
		t.Fatalf("retry revision %s, first %s", i2.body, i1.body)
	}
	if g := p.must(200, "GET", "/v1/kv/idem", ""); g.header.Get("X-Edgekv-Revision") != fmt.Sprint(revisionOf(t, i1.body)) {
		t.Fatalf("store revision moved on a retry: %s", g.header.Get("X-Edgekv-Revision"))
	}
	p.must(409, "PUT", "/v1/kv/idem", "other", "Idempotency-Key", "req-42")

	// List pagination and delete by prefix.
	for i := 0; i < 5; i++ {
		p.must(200, "PUT", fmt.Sprintf("/v1/kv/list/%d", i), fmt.Sprintf("v%d", i))
	}
	var page listBody
	json.Unmarshal([]byte(p.must(200, "GET", "/v1/kv?prefix=list/&limit=2", "").body), &page)
	if len(page.Items) != 2 || !page.More || page.Items[0].Key != "list/0" {
		t.Fatalf("page 1: %+v", page)
	}
	if v, _ := base64.StdEncoding.DecodeString(page.Items[1].Value); string(v) != "v1" {
		t.Fatalf("page 1 value %q", page.Items[1].Value)
	}
	var page2 listBody
	json.Unmarshal([]byte(p.must(200, "GET", "/v1/kv?prefix=list/&limit=10&after="+page.Items[1].Key, "").body), &page2)
	if len(page2.Items) != 3 || page2.More || page2.Items[0].Key != "list/2" {
		t.Fatalf("page 2: %+v", page2)
	}
	d := p.must(200, "DELETE", "/v1/kv?prefix=list/", "")
	if !strings.Contains(d.body, `"deleted":5`) {
		t.Fatalf("delete prefix: %s", d.body)
	}
	var page3 listBody
	json.Unmarshal([]byte(p.must(200, "GET", "/v1/kv?prefix=list/", "").body), &page3)
	if len(page3.Items) != 0 {
		t.Fatalf("after delete prefix: %+v", page3)
	}

	// Batch: all or nothing at one revision.
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	fail := p.must(412, "POST", "/v1/batch", `{"ops":[{"op":"put","key":"b1","value":"`+b64("x")+`"},{"op":"put","key":"fresh","value":"`+b64("y")+`","if_absent":true}]}`)
	if !strings.Contains(fail.body, `"failed":[1]`) {
		t.Fatalf("batch 412 body %s", fail.body)
	}
	p.must(404, "GET", "/v1/kv/b1", "")
	ok := p.must(200, "POST", "/v1/batch", `{"ops":[{"op":"put","key":"b1","value":"`+b64("x")+`"},{"op":"put","key":"b2","value":"`+b64("y")+`"},{"op":"delete","key":"fresh"}]}`)
	brev := revisionOf(t, ok.body)
	for _, k := range []string{"b1", "b2"} {
		if g := p.must(200, "GET", "/v1/kv/"+k, ""); g.header.Get("ETag") != fmt.Sprintf("%q", fmt.Sprint(brev)) {
			t.Fatalf("%s ETag %s, want the batch revision %d", k, g.header.Get("ETag"), brev)
		}
	}
	p.must(404, "GET", "/v1/kv/fresh", "")

	if code := p.stop(syscall.SIGINT); code != 0 {
		t.Fatalf("exit code %d after SIGINT: %s", code, p.stderr.String())
	}
}

func TestRestartKeepsAcknowledgedData(t *testing.T) {
	dir := t.TempDir()
	flags := nodeFlags(t, dir)
	p := start(t, flags...)
	p.waitReady()
	revs := map[string]uint64{}
	for i := 0; i < 30; i++ {
		k := fmt.Sprintf("k%02d", i)
		revs[k] = revisionOf(t, p.must(200, "PUT", "/v1/kv/"+k, "v-"+k).body)
	}
	if code := p.stop(syscall.SIGTERM); code != 0 {
		t.Fatalf("exit code %d after SIGTERM: %s", code, p.stderr.String())
	}
	p = start(t, flags...)
	p.waitReady()
	for k, rev := range revs {
		g := p.must(200, "GET", "/v1/kv/"+k, "")
		if g.body != "v-"+k || g.header.Get("ETag") != fmt.Sprintf("%q", fmt.Sprint(rev)) {
			t.Fatalf("after restart %s = %q %s, want rev %d", k, g.body, g.header.Get("ETag"), rev)
		}
	}
	// A crash (SIGKILL) right after acknowledged writes loses none of them.
	last := revisionOf(t, p.must(200, "PUT", "/v1/kv/last", "before-crash").body)
	p.kill()
	p = start(t, flags...)
	p.waitReady()
	if g := p.must(200, "GET", "/v1/kv/last", ""); g.body != "before-crash" || g.header.Get("ETag") != fmt.Sprintf("%q", fmt.Sprint(last)) {
		t.Fatalf("after kill -9: %q %s", g.body, g.header.Get("ETag"))
	}
	// Another node name on the same data dir is refused with one line.
	other := append(append([]string{}, flags...), "--name", "someone-else")
	code, _, stderr := runOnce(t, other...)
	if code != 1 || strings.Count(strings.TrimSpace(stderr), "\n") != 0 || !strings.Contains(stderr, "node1") {
		t.Fatalf("other name on a used data dir: exit %d, stderr %q", code, stderr)
	}
}

func TestCommandLine(t *testing.T) {
	code, out, _ := runOnce(t, "version")
	if code != 0 || !strings.HasPrefix(out, "edgekv ") || !strings.Contains(out, "go") {
		t.Fatalf("version: exit %d, %q", code, out)
	}
	code, _, help := runOnce(t, "--help")
	if code != 0 {
		t.Fatalf("--help exit %d", code)
	}
	for _, flag := range []string{"--name", "--data-dir", "--listen-client", "--listen-peer", "--initial-cluster", "--request-timeout", "--quota-bytes", "EDGEKV_DATA_DIR"} {
		if !strings.Contains(help, flag) {
			t.Errorf("--help does not document %s", flag)
		}
	}
	file := filepath.Join(t.TempDir(), "a-file")
	if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"unknown flag", []string{"--no-such-flag"}, "no-such-flag"},
		{"bad duration", []string{"--request-timeout", "soon"}, "request-timeout"},
		{"bad address", []string{"--listen-client", "nowhere"}, "listen-client"},
		{"data dir is a file", nodeFlags(t, file), "a-file"},
		{"data dir under a file", nodeFlags(t, filepath.Join(file, "sub")), "a-file"},
	} {
		code, _, stderr := runOnce(t, tc.args...)
		lines := strings.Split(strings.TrimSpace(stderr), "\n")
		last := lines[len(lines)-1]
		if code != 1 || !strings.Contains(last, tc.want) || !strings.HasPrefix(last, "edgekv") {
			t.Errorf("%s: exit %d, stderr %q; want exit 1 and a line naming %q", tc.name, code, stderr, tc.want)
		}
	}
	// A port already in use is one clear line too.
	busy := start(t, nodeFlags(t, t.TempDir())...)
	args := nodeFlags(t, t.TempDir())
	args[3] = busy.client
	code, _, stderr := runOnce(t, args...)
	if code != 1 || !strings.Contains(stderr, "listen-client") {
		t.Errorf("client port in use: exit %d, stderr %q", code, stderr)
	}
}

// TestSignalDuringBootstrapDiscovery: a member waiting for the others of a
// new cluster stops cleanly (exit 0) on SIGTERM.
func TestSignalDuringBootstrapDiscovery(t *testing.T) {
	self, other := freeAddr(t), freeAddr(t)
	p := startAsync(t, "--name", "a", "--data-dir", t.TempDir(), "--listen-client", freeAddr(t), "--listen-peer", self,
		"--initial-cluster", "a="+self+",b="+other)
	// It prints nothing until the others answer; wait for its log line.
	deadline := time.Now().Add(20 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !strings.Contains(p.stderr.String(), "waiting for member") {
		if time.Now().After(deadline) {
			t.Fatalf("no discovery log line: %s", p.stderr.String())
		}
		<-tick.C
	}
	if code := p.stop(syscall.SIGTERM); code != 0 {
		t.Fatalf("exit code %d: %s", code, p.stderr.String())
	}
}

// TestEnvironmentVariables: every flag can come from EDGEKV_<FLAG>; the
// command line wins; unknown EDGEKV_ variables are ignored with a warning.
func TestEnvironmentVariables(t *testing.T) {
	client := freeAddr(t)
	p := startBinaryEnv(t, binary(t), []string{
		"EDGEKV_DATA_DIR=" + t.TempDir(), "EDGEKV_LISTEN_CLIENT=" + client,
		"EDGEKV_LISTEN_PEER=" + freeAddr(t), "EDGEKV_NAME=from-env", "EDGEKV_NO_SUCH_THING=1",
	}, "--name", "from-flag")
	p.awaitServing()
	if p.client != client {
		t.Fatalf("serving on %s, want %s from EDGEKV_LISTEN_CLIENT", p.client, client)
	}
	p.waitReady()
	p.must(200, "PUT", "/v1/kv/k", "v")
	if !strings.Contains(p.stderr.String(), "EDGEKV_NO_SUCH_THING") {
		t.Fatalf("no warning about the unknown variable: %s", p.stderr.String())
	}
	if !strings.Contains(p.stderr.String(), "from-flag") || strings.Contains(p.stderr.String(), "from-env") {
		t.Fatalf("the command line did not win over EDGEKV_NAME: %s", p.stderr.String())
	}
}
