#!/bin/bash
# Image benchmarks: our tools against the C tools (when on PATH) on a large
# tree, plus fs-verity throughput. Usage: images.sh BINDIR [TREE]
set -euo pipefail
bin=${1:?usage: images.sh BINDIR [TREE]}
tree=${2:-${BENCH_TREE:-/usr}}
cd "$(dirname "$0")/../.."
CGO_ENABLED=0 go run ./tests/bench/imagebench -bin "$bin" -tree "$tree"
