#!/usr/bin/env bash
# The lint gate of cloud-cli-proxy, the one `task lint` and scripts/test.sh (so CI) run:
# gofmt, go vet, staticcheck (pinned), go mod tidy. Every step runs; the script fails if any
# did. staticcheck and go mod tidy -diff need the Go module proxy (or a warm module cache).
set -uo pipefail
cd "$(dirname "$0")/.."

export PATH="$PATH:/usr/local/go/bin:$(go env GOPATH 2>/dev/null)/bin"

# honnef.co/go/tools: v0.8.x is the release for Go 1.26 (v0.7.0 runs too); bump with Go.
STATICCHECK_VERSION="${STATICCHECK_VERSION:-v0.8.2}"

failed=()

echo "== gofmt -l"
unformatted=$(gofmt -l . 2>&1)
if [ -n "$unformatted" ]; then
  printf 'not gofmt-formatted (run gofmt -w):\n%s\n' "$unformatted" >&2
  failed+=(gofmt)
fi

echo "== go vet ./..."
go vet ./... || failed+=("go vet")

echo "== staticcheck $STATICCHECK_VERSION ./..."
go run "honnef.co/go/tools/cmd/staticcheck@$STATICCHECK_VERSION" ./... || failed+=(staticcheck)

echo "== go mod tidy -diff"
go mod tidy -diff || failed+=("go mod tidy -diff (run go mod tidy)")

if [ ${#failed[@]} -gt 0 ]; then
  printf 'lint failed: %s\n' "${failed[*]}" >&2
  exit 1
fi
echo "== lint passed"
