//go:build crashtest

package storage

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/edgekv/edgekv/consensus/raftmsg"
	"github.com/edgekv/edgekv/storage/vfs"
)

// The child side of TestKill9Durability runs when this variable names a
// data dir.
const crashChildEnv = "EDGEKV_CRASHTEST_CHILD_DIR"

// crashEntryData is the deterministic content of entry i, so the parent can
// check what it recovers.
func crashEntryData(i uint64) []byte {
	return bytes.Repeat([]byte(strconv.FormatUint(i, 10)+";"), int(i*7919%300))
}

func crashSnapshotPayload(index uint64) []byte {
	return bytes.Repeat([]byte(fmt.Sprintf("snapshot-%d;", index)), 500)
}

func TestMain(m *testing.M) {
	if dir := os.Getenv(crashChildEnv); dir != "" {
		if err := crashChild(dir); err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			os.Exit(2)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// crashChild appends and saves in a loop, printing "synced N" after each
// Save returned (N is then durable), until it is killed.
func crashChild(dir string) error {
	s, rec, err := Open(dir, Options{Identity: testID, SegmentBytes: 64 << 10, SnapshotKeep: 2})
	if err != nil {
		return err
	}
	if rec.Snapshot != nil {
		rec.Snapshot.Close()
	}
	last := s.LastIndex()
	out := bufio.NewWriter(os.Stdout)
	rng := rand.New(rand.NewPCG(uint64(os.Getpid()), 7))
	for round := 0; round < 100000; round++ {
		n := 1 + rng.IntN(8)
		ents := make([]raftmsg.Entry, n)
		for k := range ents {
			idx := last + 1 + uint64(k)
			ents[k] = raftmsg.Entry{Index: idx, Term: 1, Data: crashEntryData(idx)}
		}
		if err := s.Save(raftmsg.HardState{Term: 1, Commit: last}, ents); err != nil {
			return err
		}
		last += uint64(n)
		fmt.Fprintf(out, "synced %d\n", last)
		out.Flush()
		if round%40 == 39 {
			if err := s.SaveSnapshot(raftmsg.SnapshotMeta{Index: last, Term: 1}, []byte("members"), payloadWriter(crashSnapshotPayload(last))); err != nil {
				return err
			}
		}
	}
	return s.Close()
}

// TestKill9Durability runs a child that saves in a loop and reports each
// durable index, SIGKILLs it at a random moment, reopens the data dir and
// checks every reported index is there. The crashtest build holds unsynced
// writes in the child's memory, so the kill loses exactly what a power cut
// would. EDGEKV_CRASHTEST_ROUNDS raises the number of kills.
func TestKill9Durability(t *testing.T) {
	if !vfs.CrashTestBuild {
		t.Fatal("built without the crashtest tag")
	}
	rounds := 12
	if v := os.Getenv("EDGEKV_CRASHTEST_ROUNDS"); v != "" {
		rounds, _ = strconv.Atoi(v)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv("EDGEKV_CRASHTEST_SEED"); v != "" {
		seed, _ = strconv.ParseUint(v, 10, 64)
	}
	t.Logf("kill timing seed %d (EDGEKV_CRASHTEST_SEED replays the parent's choices)", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	var maxReported uint64
	for round := 0; round < rounds; round++ {
		reported := runAndKill(t, exe, dir, 1+rng.IntN(120), time.Duration(rng.IntN(3000))*time.Microsecond)
		maxReported = max(maxReported, reported)
		checkRecovered(t, dir, maxReported)
	}
	if maxReported == 0 {
		t.Fatal("the child never reported a synced index")
	}
	t.Logf("%d kills, highest reported index %d", rounds, maxReported)
}

// runAndKill starts the child, waits until it has reported wantReports
// synced indexes, lets it run for extra more, SIGKILLs it, and returns the
// highest index it reported.
func runAndKill(t *testing.T, exe, dir string, wantReports int, extra time.Duration) uint64 {
	t.Helper()
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), crashChildEnv+"="+dir)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan uint64, 1024)
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), "synced "); ok {
				n, _ := strconv.ParseUint(v, 10, 64)
				lines <- n
			}
		}
		close(lines)
	}()
	var highest uint64
	deadline := time.After(20 * time.Second)
	count := 0
wait:
	for count < wantReports {
		select {
		case n, ok := <-lines:
			if !ok {
				break wait
			}
			highest = max(highest, n)
			count++
		case <-deadline:
			cmd.Process.Kill()
			t.Fatalf("child reported %d of %d indexes in time", count, wantReports)
		}
	}
	if count < wantReports {
		cmd.Wait()
		t.Fatalf("child exited early: %s", stderr.String())
	}
	killAt := time.After(extra)
collect:
	for {
		select {
		case n := <-lines:
			highest = max(highest, n)
		case <-killAt:
			break collect
		}
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for n := range lines { // reports written before the kill still count
		highest = max(highest, n)
	}
	<-readDone
	cmd.Wait()
	return highest
}

// checkRecovered opens dir and checks that every index up to reported is
// there, either in the snapshot or as an entry with the right content.
func checkRecovered(t *testing.T, dir string, reported uint64) {
	t.Helper()
	s, rec, err := Open(dir, Options{Identity: testID, SegmentBytes: 64 << 10})
	if err != nil {
		t.Fatalf("reopen after kill: %v", err)
	}
	defer s.Close()
	var snapIndex uint64
	if rec.Snapshot != nil {
		snapIndex = rec.Snapshot.Meta.Index
		payload, err := io.ReadAll(rec.Snapshot.Payload)
		rec.Snapshot.Close()
		if err != nil || !bytes.Equal(payload, crashSnapshotPayload(snapIndex)) {
			t.Fatalf("snapshot at %d: payload wrong (%v)", snapIndex, err)
		}
	}
	last := snapIndex
	for i, e := range rec.Entries {
		if e.Index != snapIndex+1+uint64(i) || !bytes.Equal(e.Data, crashEntryData(e.Index)) {
			t.Fatalf("entry %d after snapshot %d is wrong: index %d", i, snapIndex, e.Index)
		}
		last = e.Index
	}
	if last < reported {
		t.Fatalf("reported %d as synced, recovered only up to %d (snapshot %d)", reported, last, snapIndex)
	}
}
