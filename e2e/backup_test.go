package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// download GETs path into a file and returns the response headers.
func (p *proc) download(path, file string) http.Header {
	p.t.Helper()
	resp, err := httpClient.Get("http://" + p.client + path)
	if err != nil {
		p.t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		p.t.Fatalf("GET %s: %d %s", path, resp.StatusCode, b)
	}
	f, err := os.Create(file)
	if err != nil {
		p.t.Fatal(err)
	}
	defer f.Close()
	if _, err := io.Copy(f, resp.Body); err != nil {
		p.t.Fatalf("GET %s: %v", path, err)
	}
	return resp.Header
}

type listItem struct {
	Key      string `json:"key"`
	Value    string `json:"value"`
	Revision uint64 `json:"revision"`
}

// listAll lists every key of a member with the given consistency.
func (p *proc) listAll(consistency string) []listItem {
	p.t.Helper()
	var all []listItem
	after := ""
	for {
		r := p.must(200, "GET", "/v1/kv?limit=1000&consistency="+consistency+"&after="+after, "")
		var page struct {
			Items []listItem `json:"items"`
			More  bool       `json:"more"`
		}
		if err := json.Unmarshal([]byte(r.body), &page); err != nil {
			p.t.Fatalf("list: %v: %s", err, r.body)
		}
		all = append(all, page.Items...)
		if !page.More {
			return all
		}
		after = page.Items[len(page.Items)-1].Key
	}
}

// TestBackupRestoreIntoNewCluster: GET /v1/snapshot from a follower of a
// 3-member cluster, `edgekv restore` into a new data dir, and the node
// started on it holds the same keys, values and revisions, takes writes,
// and refuses nothing it should not; restore refuses a non-empty dir and
// a damaged file with one clear line.
func TestBackupRestoreIntoNewCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts four processes")
	}
	c := startClusterFlags(t, binary(t), 3, "--snapshot-entries", "50")
	lead := c.procs[c.leader()]
	for i := 0; i < 120; i++ {
		lead.must(200, "PUT", fmt.Sprintf("/v1/kv/key%%2F%03d", i), fmt.Sprintf("value %d", i))
	}
	lead.must(200, "DELETE", "/v1/kv/key%2F007", "")
	lead.must(200, "POST", "/v1/batch", `{"ops":[{"op":"put","key":"b1","value":"AAEC"},{"op":"put","key":"b2","value":""}]}`)
	src := c.procs[c.follower()]
	want := src.listAll("linearizable")
	if len(want) != 121 {
		t.Fatalf("source holds %d keys, want 121", len(want))
	}
	var maxRev uint64
	for _, it := range want {
		maxRev = max(maxRev, it.Revision)
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "backup.snap")
	h := src.download("/v1/snapshot", file)
	if h.Get("Content-Type") != "application/octet-stream" || h.Get("X-Edgekv-Snapshot-Index") == "" || !strings.Contains(h.Get("Content-Disposition"), ".snap") {
		t.Fatalf("backup headers %v", h)
	}
	if h.Get("X-Edgekv-Revision") != fmt.Sprint(maxRev) {
		// The batch was the last write: the backup reflects it.
		t.Fatalf("backup revision %s, newest key revision %d", h.Get("X-Edgekv-Revision"), maxRev)
	}
	// Writes after the backup are not in it.
	lead.must(200, "PUT", "/v1/kv/after-backup", "x")

	dataDir := filepath.Join(dir, "restored")
	peer, client := freeAddr(t), freeAddr(t)
	code, out, errOut := runOnce(t, "restore", "--from", file, "--data-dir", dataDir, "--name", "r1",
		"--listen-peer", peer, "--initial-cluster-token", "restored-"+t.Name())
	if code != 0 || !strings.Contains(out, "121 keys") {
		t.Fatalf("restore exited %d: %s %s", code, out, errOut)
	}
	code, _, errOut = runOnce(t, "restore", "--from", file, "--data-dir", dataDir, "--name", "r1", "--listen-peer", peer)
	if code != 1 || !strings.Contains(errOut, "not empty") || strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
		t.Fatalf("restore into a non-empty dir: exit %d, %q", code, errOut)
	}
	damaged := filepath.Join(dir, "damaged.snap")
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	raw[len(raw)/2] ^= 1
	if err := os.WriteFile(damaged, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, errOut = runOnce(t, "restore", "--from", damaged, "--data-dir", filepath.Join(dir, "other"), "--name", "r2")
	if code != 1 || !strings.Contains(errOut, "not a valid edgekv backup") || !strings.Contains(errOut, "checksum") {
		t.Fatalf("restore of a damaged backup: exit %d, %q", code, errOut)
	}
	code, _, errOut = runOnce(t, "restore", "--data-dir", filepath.Join(dir, "other"), "--name", "r2")
	if code != 1 || !strings.Contains(errOut, "--from") {
		t.Fatalf("restore without --from: exit %d, %q", code, errOut)
	}

	r := start(t, "--name", "r1", "--data-dir", dataDir, "--listen-peer", peer, "--listen-client", client,
		"--initial-cluster-token", "restored-"+t.Name(), "--heartbeat-interval", "20ms", "--election-timeout", "500ms")
	r.waitReady()
	got := r.listAll("linearizable")
	if len(got) != len(want) {
		t.Fatalf("restored cluster holds %d keys, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("key %d: restored %+v, source %+v", i, got[i], want[i])
		}
	}
	r.must(404, "GET", "/v1/kv/after-backup", "")
	r.must(404, "GET", "/v1/kv/key%2F007", "")
	rev := revisionOf(t, r.must(200, "PUT", "/v1/kv/new", "in the new cluster").body)
	if rev != maxRev+1 {
		t.Fatalf("first write of the restored cluster at revision %d, want %d", rev, maxRev+1)
	}
	// A restart keeps it (the restored data dir is a normal one).
	if code := r.stop(syscall.SIGTERM); code != 0 {
		t.Fatalf("restored node exited %d", code)
	}
	r = start(t, "--name", "r1", "--data-dir", dataDir, "--listen-peer", peer, "--listen-client", client,
		"--initial-cluster-token", "restored-"+t.Name(), "--heartbeat-interval", "20ms", "--election-timeout", "500ms")
	r.waitReady()
	if g := r.must(200, "GET", "/v1/kv/new", ""); g.body != "in the new cluster" {
		t.Fatalf("after restart: %q", g.body)
	}
	if g := r.must(200, "GET", "/v1/kv/b1", ""); g.body != "\x00\x01\x02" {
		t.Fatalf("b1 = %q", g.body)
	}
}

// TestForceNewClusterFromSurvivor (crashtest build: kill -9 loses what a
// power cut would): two of three data dirs are deleted; the survivor,
// started with --force-new-cluster, is a single-voter cluster holding
// every write that was acknowledged and that it had applied, and takes
// new writes; without the flag it restarts as that same cluster.
func TestForceNewClusterFromSurvivor(t *testing.T) {
	if testing.Short() {
		t.Skip("starts five processes")
	}
	bin := binaryWithTags(t, "crashtest")
	c := startClusterFlags(t, bin, 3, "--snapshot-entries", "25")
	lead := c.leader()
	survivor := c.follower()
	acked := map[string]string{}
	for i := 0; i < 80; i++ {
		key := fmt.Sprintf("k%03d", i)
		// Alternate members: writes through followers are forwarded.
		p := c.procs[c.names[i%len(c.names)]]
		r := p.do("PUT", "/v1/kv/"+key, "v-"+key)
		if r.status == 200 {
			acked[key] = r.header.Get("ETag")
		}
	}
	if len(acked) < 70 {
		t.Fatalf("only %d of 80 writes acknowledged", len(acked))
	}
	sp := c.procs[survivor]
	waitUntil(t, "the survivor to apply the last acknowledged write", func() bool {
		return sp.do("GET", "/v1/kv/k079?consistency=stale", "").status == 200 || acked["k079"] == ""
	})
	// Quorum lost for good: every process dies at once (kill -9), two
	// data dirs are gone.
	for _, p := range c.procs {
		p.cmd.Process.Kill()
	}
	for _, name := range c.names {
		c.procs[name].kill()
		if name != survivor {
			if err := os.RemoveAll(flagValue(c.flags[name], "--data-dir")); err != nil {
				t.Fatal(err)
			}
		}
	}
	_ = lead
	flags := append(append([]string(nil), c.flags[survivor]...), "--force-new-cluster")
	p := startBinary(t, bin, flags...)
	p.awaitServing()
	p.waitReady()
	logText := p.stderr.String()
	if !strings.Contains(logText, "--force-new-cluster") || !strings.Contains(logText, "level=WARN") {
		t.Fatalf("no loud warning: %s", logText)
	}
	for key, etag := range acked {
		g := p.do("GET", "/v1/kv/"+key, "")
		if g.status != 200 || g.body != "v-"+key || g.header.Get("ETag") != etag {
			t.Fatalf("acknowledged %s (ETag %s) after --force-new-cluster: %d %q ETag %s", key, etag, g.status, g.body, g.header.Get("ETag"))
		}
	}
	rev := revisionOf(t, p.must(200, "PUT", "/v1/kv/after-force", "alone").body)
	var cluster struct {
		Leader  string            `json:"leader"`
		Members []json.RawMessage `json:"members"`
	}
	if err := json.Unmarshal([]byte(p.must(200, "GET", "/v1/cluster", "").body), &cluster); err != nil {
		t.Fatal(err)
	}
	if cluster.Leader != survivor || len(cluster.Members) != 1 {
		t.Fatalf("after --force-new-cluster: leader %q, %d members", cluster.Leader, len(cluster.Members))
	}
	// Crash again and restart without the flag: the same one-member
	// cluster, with the write made after the force.
	p.kill()
	p = startBinary(t, bin, c.flags[survivor]...)
	p.awaitServing()
	p.waitReady()
	g := p.must(200, "GET", "/v1/kv/after-force", "")
	if g.body != "alone" || g.header.Get("ETag") != fmt.Sprintf("%q", fmt.Sprint(rev)) {
		t.Fatalf("after restart: %q ETag %s, want rev %d", g.body, g.header.Get("ETag"), rev)
	}
}
