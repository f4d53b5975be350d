#!/usr/bin/env bash
# Backs up cloud-cli-proxy into BACKUP_DIR and prunes backups older than RETENTION_DAYS.
#
#   sudo bash deploy/scripts/backup.sh
#   BACKUP_DIR=/data/backups RETENTION_DAYS=30 bash deploy/scripts/backup.sh
#
# Works while the server runs (the binary asks it over DATA_DIR/admin.sock for a consistent
# snapshot) and when it is stopped (the binary reads the database). Each backup is verified
# before anything is pruned; any failure exits non-zero and says why, and prunes nothing.
#
#   BACKUP_DIR           where backups go (default /var/backups/cloud-cli-proxy, created 0700)
#   RETENTION_DAYS       backups older than this many days are deleted (default 7; 0 keeps
#                        only the new one)
#   ENV_FILE             the server's env file (default /etc/cloud-cli-proxy/cloud-cli-proxy.env,
#                        used when it exists): DATA_DIR comes from it
#   DATA_DIR             the server's data dir (default: the env file's, else /var/lib/cloud-cli-proxy)
#   CLOUD_CLI_PROXY_BIN  the binary (default: cloud-cli-proxy on PATH, else /usr/local/bin/cloud-cli-proxy)
set -euo pipefail

die() {
  echo "backup.sh: $*" >&2
  exit 1
}

BACKUP_DIR="${BACKUP_DIR:-/var/backups/cloud-cli-proxy}"
RETENTION_DAYS="${RETENTION_DAYS:-7}"
ENV_FILE="${ENV_FILE:-/etc/cloud-cli-proxy/cloud-cli-proxy.env}"
export -n ENV_FILE # the binary gets --env-file, and only when the file exists

[[ "$RETENTION_DAYS" =~ ^[0-9]+$ ]] || die "RETENTION_DAYS must be a whole number of days, not '$RETENTION_DAYS'"
[ -n "$BACKUP_DIR" ] || die "BACKUP_DIR is empty"

bin="${CLOUD_CLI_PROXY_BIN:-}"
if [ -z "$bin" ]; then
  bin="$(command -v cloud-cli-proxy || true)"
  [ -n "$bin" ] || bin=/usr/local/bin/cloud-cli-proxy
fi
[ -x "$bin" ] || die "cloud-cli-proxy binary not found or not executable: $bin (set CLOUD_CLI_PROXY_BIN)"

args=()
if [ -e "$ENV_FILE" ]; then
  [ -r "$ENV_FILE" ] || die "cannot read the env file $ENV_FILE (run with sudo)"
  args+=(--env-file "$ENV_FILE")
fi
if [ -z "${DATA_DIR:-}" ] && ! { [ -r "$ENV_FILE" ] && grep -Eq '^[[:space:]]*(export[[:space:]]+)?DATA_DIR=' "$ENV_FILE"; }; then
  DATA_DIR=/var/lib/cloud-cli-proxy # the systemd unit's StateDirectory
fi
if [ -n "${DATA_DIR:-}" ]; then
  args+=(--data-dir "$DATA_DIR")
fi

umask 077
mkdir -p "$BACKUP_DIR" || die "cannot create BACKUP_DIR $BACKUP_DIR"
[ -w "$BACKUP_DIR" ] || die "cannot write to BACKUP_DIR $BACKUP_DIR (run with sudo)"

# One run at a time.
if command -v flock >/dev/null 2>&1; then
  exec 9>"$BACKUP_DIR/.backup.lock" || die "cannot open $BACKUP_DIR/.backup.lock"
  flock -n 9 || die "another backup.sh is running on $BACKUP_DIR"
fi

name="cloud-cli-proxy-$(date -u +%Y%m%dT%H%M%SZ).ccpbak"
out="$BACKUP_DIR/$name"

"$bin" backup --out "$out" "${args[@]}" || die "backup failed (see the message above); nothing was pruned"
if ! "$bin" verify --from "$out" --tmp-dir "$BACKUP_DIR"; then
  mv -f "$out" "$out.failed" 2>/dev/null || true
  die "the new backup does not verify (kept as $out.failed); nothing was pruned"
fi

# Prune: backups older than RETENTION_DAYS days, never the one just written.
list="$(mktemp "$BACKUP_DIR/.prune.XXXXXX")" || die "cannot create a temporary file in $BACKUP_DIR"
trap 'rm -f -- "$list"' EXIT
find "$BACKUP_DIR" -maxdepth 1 -type f -name 'cloud-cli-proxy-*.ccpbak' ! -name "$name" \
  -mmin +"$((RETENTION_DAYS * 1440))" -print0 >"$list" || die "cannot list the old backups in $BACKUP_DIR"
pruned=0
while IFS= read -r -d '' old; do
  rm -f -- "$old" || die "cannot delete the old backup $old"
  echo "pruned $old"
  pruned=$((pruned + 1))
done <"$list"
echo "backup.sh: $out written and verified; $pruned backup(s) older than $RETENTION_DAYS day(s) pruned"
