#!/bin/bash
# ostree benchmark: `cfsctl ostree commit` (a commit synthesized from a
# repository image, file contents reflinked) against `ostree commit` of the
# same tree checked out, on one XFS loop filesystem. Needs root, mkfs.xfs and
# the ostree CLI; prints SKIP without them. Usage: ostree.sh BINDIR [FLAGS]
set -euo pipefail
bin=${1:?usage: ostree.sh BINDIR [OSTREEBENCH FLAGS]}
shift
cd "$(dirname "$0")/../.."
CGO_ENABLED=0 go run ./tests/bench/ostreebench -bin "$bin" "$@"
