#!/usr/bin/env bash
# Runs every Go fuzz target of the module for FUZZTIME each (default 5s). go test fuzzes one
# target of one package per invocation, so each target gets its own
#   go test -run=^$ -fuzz=^Name$ -fuzztime=$FUZZTIME <package>
# Targets are discovered with go test -list, so new ones are picked up without editing this.
# Give package patterns as arguments to fuzz only those (e.g. scripts/fuzz.sh ./app ./api).
# Independent of the Taskfile; CI runs it briefly from scripts/test.sh. A failing input is
# written under the package's testdata/fuzz/ and then replays as a normal test.
set -euo pipefail
cd "$(dirname "$0")/.."

export PATH="$PATH:/usr/local/go/bin"
FUZZTIME="${FUZZTIME:-5s}"

[ "$#" -gt 0 ] || set -- ./...
# Only packages whose test files declare a fuzz target are compiled to list them.
pkgs=()
while read -r dir pkg; do
  if grep -qsE '^func Fuzz[A-Za-z0-9_]*\(' "$dir"/*_test.go; then
    pkgs+=("$pkg")
  fi
done < <(go list -f '{{.Dir}} {{.ImportPath}}' "$@")

ran=0
failed=()
for pkg in "${pkgs[@]}"; do
  # A package whose tests do not build fails here, loudly, rather than being skipped.
  listing=$(go test -list '^Fuzz' "$pkg")
  for name in $(printf '%s\n' "$listing" | grep -E '^Fuzz[A-Za-z0-9_]*$' || true); do
    echo "== fuzz $pkg $name for $FUZZTIME"
    ran=$((ran + 1))
    if ! go test -run='^$' -fuzz="^${name}\$" -fuzztime="$FUZZTIME" "$pkg"; then
      failed+=("$pkg $name")
    fi
  done
done

echo "== $ran fuzz targets run for $FUZZTIME each"
if [ "${#failed[@]}" -gt 0 ]; then
  printf 'fuzz target failed: %s\n' "${failed[@]}" >&2
  exit 1
fi
