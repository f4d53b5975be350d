#!/usr/bin/env bash
# Runs every test of cloud-cli-proxy: installs what the tests need (Debian packages, the offline
# test image), lints (scripts/lint.sh), fuzzes briefly, then runs the whole Go test suite.
# With CI=true, tests that need the Docker engine or root fail loudly instead of skipping.
set -euo pipefail
cd "$(dirname "$0")/.."

export PATH="$PATH:/usr/local/go/bin:$(go env GOPATH 2>/dev/null)/bin"

# Debian packages the tests use: ip/nft for the egress lab, the OpenSSH client for the SSH
# doors' end-to-end tests, debootstrap for the offline image, chromium for the browser
# desktop test (api/vnc_test.go drives noVNC through the VNC proxy with chromedp),
# shellcheck for the served bootstrap/entry scripts (api/script_test.go; fails with CI=true
# when missing), curl for running those scripts on a terminal.
need=()
command -v shellcheck >/dev/null 2>&1 || need+=(shellcheck)
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v nft >/dev/null 2>&1 || need+=(nftables)
command -v ssh >/dev/null 2>&1 || need+=(openssh-client)
command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = "0" ]; then
    echo "== installing ${need[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"
  else
    echo "== missing ${need[*]} (not root: tests that need them will skip)"
  fi
fi

# --- SSH gateway (sshd/gateway_test.go, bench/ssh): the tests run the real OpenSSH `scp`
# and `ssh` clients against the gateway; both come from openssh-client. ---
if ! command -v scp >/dev/null 2>&1; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "== installing openssh-client (scp) for the SSH gateway tests"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends openssh-client
  else
    echo "== scp missing (not root): the gateway's scp test will skip (fail with CI=true)"
  fi
fi
# --- end SSH gateway block ---

if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
  echo "== building the offline test image (cached by content)"
  bash deploy/testimage/build.sh
elif [ "${CI:-}" = "true" ]; then
  echo "the Docker engine is required in CI but is not reachable" >&2
  exit 1
else
  echo "== Docker engine not reachable: engine tests will skip"
fi

# A lint failure fails the run, but only after the tests: their results are worth having too.
echo "== lint (scripts/lint.sh: gofmt, go vet, staticcheck, go mod tidy; the same as task lint)"
lint_ok=true
bash scripts/lint.sh || lint_ok=false

if [ -f scripts/fuzz.sh ]; then
  echo "== fuzzing briefly"
  FUZZTIME="${FUZZTIME:-2s}" bash scripts/fuzz.sh
fi

echo "== go test"
go test -count=1 -timeout 20m ./...

if [ "$lint_ok" != true ]; then
  echo "the tests passed but lint failed (see == lint above; run: bash scripts/lint.sh)" >&2
  exit 1
fi
