#!/usr/bin/env bash
# Runs every test of the repository: the one command the README names and
# .ci/run calls. Extra `go test` flags (for example -v or -run) pass through.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== go vet"
go vet ./...

echo "== go test (all packages)"
go test -count=1 "$@" ./...

# Durability through the crash-simulating file system: under the crashtest
# tag unsynced writes live in process memory, so kill -9 loses exactly what
# a power cut would (a plain build cannot test durability).
echo "== go vet -tags crashtest ./storage/..."
go vet -tags crashtest ./storage/... ./node/... .
echo "== go test -tags crashtest ./storage/..."
go test -tags crashtest -count=1 "$@" ./storage/...

# Packages with concurrency of their own also run under the race detector.
race_pkgs=()
for p in ./wire/... ./zerocopy/... ./storage/... ./batch/... ./kv/... ./httpapi/... ./loadgen/... ./ebpf/... ./ops/... ./node/... ./chaos/history/... ./faultproxy/...; do
	if go list "$p" >/dev/null 2>&1; then race_pkgs+=("$p"); fi
done
if [ ${#race_pkgs[@]} -gt 0 ]; then
	echo "== go test -race ${race_pkgs[*]}"
	go test -race -count=1 "$@" "${race_pkgs[@]}"
fi

# tools/compare is its own module (etcd's client stays out of edgekv's
# dependencies); its etcd tests skip unless etcd is installed or
# REQUIRE_ETCD=1.
echo "== tools/compare: go vet, go test"
(cd tools/compare && go vet ./... && go test -count=1 "$@" ./...)
