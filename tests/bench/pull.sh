#!/bin/bash
# Pull benchmark: cfsctl oci pull from a local registry against skopeo,
# an unpacker and the C mkcomposefs (when found). Prints SKIP when
# docker-registry is not installed. Usage: pull.sh BINDIR [PULLBENCH FLAGS]
set -euo pipefail
bin=${1:?usage: pull.sh BINDIR [PULLBENCH FLAGS]}
shift
cd "$(dirname "$0")/../.."
CGO_ENABLED=0 go run -tags containers_image_openpgp ./tests/bench/pullbench -bin "$bin" "$@"
