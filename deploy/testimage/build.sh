#!/usr/bin/env bash
# Build the offline managed-workspace test image without any container
# registry: debootstrap a Debian bookworm rootfs from the apt mirror this
# machine is already configured with, add the workspace user and the
# entrypoint from ./overlay, and `docker import` the result.
#
# Usage: deploy/testimage/build.sh            (as root; prints the image id)
#
# Environment:
#   CCP_IMAGE_CACHE     cache dir for rootfs tarballs
#                       (default /var/cache/cloud-cli-proxy/testimage)
#   CCP_TEST_IMAGE      image reference (default cloud-cli-proxy/managed-test:latest)
#   CCP_DEBIAN_MIRROR   override the mirror URL read from /etc/apt/sources*
#
# Caching: the image is labelled cloud-cli-proxy.image-hash=<hash>, where the
# hash covers this script, everything under ./overlay and the architecture.
# If an image with that label exists the script only (re)tags it and exits.
# Otherwise it imports $CCP_IMAGE_CACHE/rootfs-<hash>.tar, running
# debootstrap first only if that tarball is missing.
set -euo pipefail

SUITE=bookworm
IMAGE=${CCP_TEST_IMAGE:-cloud-cli-proxy/managed-test:latest}
CACHE_DIR=${CCP_IMAGE_CACHE:-/var/cache/cloud-cli-proxy/testimage}
HASH_LABEL=cloud-cli-proxy.image-hash
WS_UID=1000
WS_GID=1000
WS_USER=workspace
WS_HOME=/home/workspace

# Packages installed with apt on top of debootstrap's minbase (no Recommends).
PACKAGES=(
	bash coreutils procps iproute2 ca-certificates curl
	python3 tmux git tini
	openssh-sftp-server
	tigervnc-standalone-server novnc websockify
	twm xterm xfonts-base
)

# Files that must exist in the finished rootfs (sanity check).
REQUIRED_FILES=(
	/usr/lib/openssh/sftp-server /usr/bin/Xtigervnc /usr/bin/websockify
	/usr/share/novnc/vnc.html /usr/bin/tini /usr/bin/curl /usr/bin/python3
	/usr/bin/tmux /usr/bin/git /usr/bin/twm /usr/bin/xterm /usr/bin/ss
	/usr/bin/ps /usr/bin/setpriv /usr/local/bin/ccp-entrypoint
	/usr/local/share/ccp/twmrc
)

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
OVERLAY_DIR=$SCRIPT_DIR/overlay
START_TS=$SECONDS

log() { printf 'testimage: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

arch() { dpkg --print-architecture 2>/dev/null || uname -m; }

# Content hash over the inputs of the image: this script, the overlay tree
# (path, executable bit, content, symlink targets) and the architecture.
compute_hash() {
	(
		cd "$SCRIPT_DIR"
		printf 'arch %s\n' "$(arch)"
		printf 'script %s\n' "$(sha256sum <build.sh | cut -d' ' -f1)"
		if [ -d overlay ]; then
			find overlay \( -type f -o -type l \) -print | LC_ALL=C sort |
				while IFS= read -r f; do
					if [ -L "$f" ]; then
						printf 'link %s %s\n' "$f" "$(readlink "$f")"
					else
						x=-
						[ -x "$f" ] && x=x
						printf 'file %s %s %s\n' "$f" "$x" "$(sha256sum <"$f" | cut -d' ' -f1)"
					fi
				done
		fi
	) | sha256sum | cut -d' ' -f1
}

image_with_hash() {
	docker image ls -q --no-trunc --filter "label=$HASH_LABEL=$1" | head -n1
}

# Print the URL of the Debian archive apt uses for $SUITE (not -security).
detect_mirror() {
	if [ -n "${CCP_DEBIAN_MIRROR:-}" ]; then
		printf '%s\n' "$CCP_DEBIAN_MIRROR"
		return
	fi
	local f url=
	# One-line format: deb [options] URL SUITE COMPONENTS...
	for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
		[ -f "$f" ] || continue
		url=$(awk -v suite="$SUITE" '
			$1 == "deb" {
				i = 2
				if ($i ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
				if ($(i + 1) == suite) { print $i; exit }
			}' "$f")
		[ -n "$url" ] && break
	done
	# deb822 format (*.sources): stanzas separated by blank lines.
	if [ -z "$url" ]; then
		for f in /etc/apt/sources.list.d/*.sources; do
			[ -f "$f" ] || continue
			url=$(awk -v suite="$SUITE" '
				BEGIN { RS = ""; FS = "\n" }
				{
					types = ""; uris = ""; suites = ""; enabled = "yes"
					for (i = 1; i <= NF; i++) {
						line = $i
						if (line ~ /^[ \t]*#/ || index(line, ":") == 0) continue
						key = tolower(substr(line, 1, index(line, ":") - 1))
						val = substr(line, index(line, ":") + 1)
						gsub(/^[ \t]+|[ \t]+$/, "", val)
						if (key == "types") types = val
						else if (key == "uris") uris = val
						else if (key == "suites") suites = val
						else if (key == "enabled") enabled = tolower(val)
					}
					if (enabled == "no") next
					if ((" " types " ") !~ / deb /) next
					if ((" " suites " ") !~ (" " suite " ")) next
					split(uris, u, /[ \t]+/)
					print u[1]
					exit
				}' "$f")
			[ -n "$url" ] && break
		done
	fi
	[ -n "$url" ] || die "no apt source for '$SUITE' found in /etc/apt; set CCP_DEBIAN_MIRROR"
	printf '%s\n' "$url"
}

ensure_debootstrap() {
	command -v debootstrap >/dev/null 2>&1 && return
	log "installing debootstrap with apt-get"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq >/dev/null
	apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
	command -v debootstrap >/dev/null 2>&1 || die "debootstrap still missing after apt-get install"
}

# Remove a scratch directory safely: unmount anything debootstrap may have
# left mounted below it, then delete without crossing file systems.
remove_tree() {
	local dir=$1 m
	[ -e "$dir" ] || return 0
	while read -r m; do
		[ -n "$m" ] && umount -l "$m" 2>/dev/null || true
	done < <(awk -v d="$dir" 'index($2, d "/") == 1 { print $2 }' /proc/self/mounts | LC_ALL=C sort -r)
	rm -rf --one-file-system "$dir"
}

WORK_DIR=
cleanup() {
	if [ -n "$WORK_DIR" ]; then
		remove_tree "$WORK_DIR"
	fi
}
trap cleanup EXIT

customize_rootfs() {
	local root=$1 f rel mode

	# Unprivileged workspace user.
	chroot "$root" groupadd --gid "$WS_GID" "$WS_USER"
	chroot "$root" useradd --uid "$WS_UID" --gid "$WS_GID" --create-home \
		--home-dir "$WS_HOME" --shell /bin/bash "$WS_USER"

	# Files shipped with this script, always root-owned.
	if [ -d "$OVERLAY_DIR" ]; then
		while IFS= read -r -d '' f; do
			rel=${f#"$OVERLAY_DIR"/}
			mode=0644
			[ -x "$f" ] && mode=0755
			install -D -o 0 -g 0 -m "$mode" "$f" "$root/$rel"
		done < <(find "$OVERLAY_DIR" -type f -print0)
	fi

	# X socket directory, normally created by root at boot; the X server
	# runs as uid 1000 here and cannot create it with the right owner.
	install -d -o 0 -g 0 -m 1777 "$root/tmp/.X11-unix"

	# Opening http://host:6901/ should land on the web client too.
	[ -e "$root/usr/share/novnc/index.html" ] || ln -s vnc.html "$root/usr/share/novnc/index.html"

	# Docker provides these at run time; do not ship the build host's.
	: >"$root/etc/resolv.conf"
	echo workspace >"$root/etc/hostname"

	# Drop package caches and logs.
	rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/cache/apt/*.bin \
		"$root"/var/lib/apt/lists/* "$root"/var/log/*.log "$root"/var/log/apt/*

	for f in "${REQUIRED_FILES[@]}"; do
		[ -e "$root$f" ] || die "rootfs is missing $f"
	done
}

# Run a command inside the rootfs with a clean, non-interactive environment.
in_chroot() {
	local root=$1
	shift
	chroot "$root" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
		DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8 "$@"
}

build_tarball() {
	local tarball=$1 mirror rootfs logf
	ensure_debootstrap
	mirror=$(detect_mirror)

	WORK_DIR=$(mktemp -d "$CACHE_DIR/work.XXXXXX")
	rootfs=$WORK_DIR/rootfs
	logf=$CACHE_DIR/build.log
	: >"$logf"

	# Step 1: bare minbase. debootstrap's own dependency resolver cannot
	# handle virtual packages, so the real package set goes in via apt.
	log "debootstrap $SUITE (minbase) from $mirror (log: $logf)"
	if ! debootstrap --variant=minbase --components=main \
		"$SUITE" "$rootfs" "$mirror" >>"$logf" 2>&1; then
		[ -f "$rootfs/debootstrap/debootstrap.log" ] &&
			cat "$rootfs/debootstrap/debootstrap.log" >>"$logf"
		tail -n 30 "$logf" >&2
		die "debootstrap failed (full log: $logf)"
	fi

	# Step 2: packages, resolved by apt inside the chroot.
	log "installing ${#PACKAGES[@]} packages with apt-get in the chroot"
	printf '#!/bin/sh\nexit 101\n' >"$rootfs/usr/sbin/policy-rc.d"
	chmod 0755 "$rootfs/usr/sbin/policy-rc.d"
	cp -L /etc/resolv.conf "$rootfs/etc/resolv.conf" 2>/dev/null || true
	mount -t proc proc "$rootfs/proc"
	local rc=0
	{
		in_chroot "$rootfs" apt-get update -q &&
			in_chroot "$rootfs" apt-get install -y -q --no-install-recommends "${PACKAGES[@]}" &&
			in_chroot "$rootfs" apt-get clean
	} >>"$logf" 2>&1 || rc=$?
	umount "$rootfs/proc"
	rm -f "$rootfs/usr/sbin/policy-rc.d"
	if [ "$rc" != 0 ]; then
		tail -n 30 "$logf" >&2
		die "apt-get in the chroot failed (full log: $logf)"
	fi

	log "customizing rootfs"
	customize_rootfs "$rootfs"

	log "writing $tarball"
	tar --numeric-owner --xattrs -C "$rootfs" -cf "$tarball.tmp" .
	mv -f "$tarball.tmp" "$tarball"

	remove_tree "$WORK_DIR"
	WORK_DIR=
}

main() {
	command -v docker >/dev/null 2>&1 || die "docker CLI not found"
	docker info >/dev/null 2>&1 || die "cannot talk to the Docker daemon"

	local hash id tarball
	hash=$(compute_hash)

	# Fast path: image already built from exactly these inputs.
	id=$(image_with_hash "$hash")
	if [ -n "$id" ]; then
		docker tag "$id" "$IMAGE"
		log "up to date ($IMAGE, hash ${hash:0:12}), ${SECONDS}s"
		printf '%s\n' "$id"
		return
	fi

	[ "$(id -u)" = 0 ] || die "must run as root (debootstrap/chroot)"
	mkdir -p "$CACHE_DIR"

	# Serialize concurrent builds; re-check once we hold the lock.
	exec 9>"$CACHE_DIR/.lock"
	flock 9
	id=$(image_with_hash "$hash")
	if [ -z "$id" ]; then
		# Leftovers of interrupted runs.
		local d
		for d in "$CACHE_DIR"/work.*; do
			[ -d "$d" ] && remove_tree "$d"
		done
		rm -f "$CACHE_DIR"/*.tar.tmp

		tarball=$CACHE_DIR/rootfs-$hash.tar
		if [ -s "$tarball" ]; then
			log "using cached rootfs $tarball"
		else
			build_tarball "$tarball"
		fi

		# Keep only the tarball for the current inputs.
		local t
		for t in "$CACHE_DIR"/rootfs-*.tar; do
			[ "$t" = "$tarball" ] || rm -f "$t"
		done

		log "importing into docker as $IMAGE"
		local old
		old=$(docker image ls -q --no-trunc "$IMAGE" 2>/dev/null | head -n1 || true)
		docker import \
			--change "LABEL $HASH_LABEL=$hash" \
			--change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
			--change "ENV HOME=$WS_HOME" \
			--change 'ENV LANG=C.UTF-8' \
			--change 'ENV DISPLAY=:1' \
			--change "USER $WS_UID:$WS_GID" \
			--change "WORKDIR $WS_HOME" \
			--change 'EXPOSE 6901' \
			--change 'ENTRYPOINT ["/usr/bin/tini", "-s", "-g", "--"]' \
			--change 'CMD ["/usr/local/bin/ccp-entrypoint"]' \
			--message "cloud-cli-proxy managed test image ($hash)" \
			"$tarball" "$IMAGE" >/dev/null
		id=$(image_with_hash "$hash")
		[ -n "$id" ] || die "import finished but no image carries $HASH_LABEL=$hash"

		# Best effort: drop the image this one replaced (fails harmlessly
		# while containers still use it).
		if [ -n "$old" ] && [ "$old" != "$id" ] &&
			[ -n "$(docker image inspect -f "{{index .Config.Labels \"$HASH_LABEL\"}}" "$old" 2>/dev/null)" ]; then
			docker image rm "$old" >/dev/null 2>&1 || true
		fi
	fi
	flock -u 9

	docker tag "$id" "$IMAGE"
	log "built $IMAGE (hash ${hash:0:12}) in $((SECONDS - START_TS))s"
	printf '%s\n' "$id"
}

main "$@"
