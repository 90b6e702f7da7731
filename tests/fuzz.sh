#!/bin/bash
# Runs every fuzz target of the module for FUZZTIME each (go test takes one
# -fuzz target per run).
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
FUZZTIME=${FUZZTIME:-60s}
TAGS=${TAGS:-}
grep -rl --include='*_test.go' '^func Fuzz' . | sort | while read -r f; do
    pkg=./$(dirname "${f#./}")
    for fn in $(grep -o '^func Fuzz[A-Za-z0-9_]*' "$f" | cut -d' ' -f2); do
        echo "== $pkg $fn"
        "$GO" test -tags "$TAGS" -run '^$' -fuzz "^$fn\$" -fuzztime "$FUZZTIME" "$pkg"
    done
done
