#!/usr/bin/env bash
# The container image, built and run for the test suite (test/image/image.test.ts runs the checks).
#
#   scripts/image.sh build             build bar-writer:test from the Dockerfile (prints the image size)
#   scripts/image.sh engine ARGS...    run the container engine with ARGS (docker, or podman as set up here)
#   scripts/image.sh which             print the engine: docker or podman
#
# The engine is docker where an engine answers (`docker info`), else Debian's podman (installed with
# runc and debootstrap when missing and root), configured as ../shared/notes/containers.md says:
# cgroupfs, runc, no default ulimits; containers use the host network. The base image
# (node:20-bookworm-slim) is pulled where it can be; where it cannot (no Docker Hub), a stand-in is
# assembled once and cached: Debian bookworm (debootstrap, minbase) with this machine's Node 20 laid out
# as the official image does, user node (uid 1000), and this machine's CA bundle.
#
# Environment: IMAGE (default bar-writer:test), BAR_WRITER_CACHE (default /var/cache/bar-writer, or
# ~/.cache/bar-writer when not root).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
image=${IMAGE:-bar-writer:test}
base=docker.io/library/node:20-bookworm-slim
if [ "$(id -u)" = 0 ]; then cache=${BAR_WRITER_CACHE:-/var/cache/bar-writer}; else cache=${BAR_WRITER_CACHE:-$HOME/.cache/bar-writer}; fi

log() { printf 'image.sh: %s\n' "$*" >&2; }

engine_name() {
  if command -v docker >/dev/null && timeout 10 docker info >/dev/null 2>&1; then echo docker; else echo podman; fi
}

# Installs the commands named (as Debian packages of the same name) that are missing; needs root and apt-get.
need() {
  local -a want=()
  local c
  for c in "$@"; do command -v "$c" >/dev/null || want+=("$c"); done
  [ ${#want[@]} -eq 0 ] && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    log "installing ${want[*]} (apt-get)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${want[@]}" >/dev/null \
      || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${want[@]}" >/dev/null; }
  else
    log "needs ${want[*]}: install them (Debian: apt-get install -y ${want[*]})"; exit 1
  fi
}

setup_podman() {
  need podman runc
  mkdir -p "$cache"
  cat >"$cache/containers.conf" <<'CONF'
[containers]
default_ulimits = []

[engine]
cgroup_manager = "cgroupfs"
runtime = "runc"
CONF
  export CONTAINERS_CONF=$cache/containers.conf
}

engine() {
  local name; name=$(engine_name)
  if [ "$name" = podman ]; then setup_podman; fi
  "$name" "$@"
}

image_exists() {
  if [ "$(engine_name)" = podman ]; then engine image exists "$1"; else engine image inspect "$1" >/dev/null 2>&1; fi
}

# Debian bookworm + this machine's Node 20, laid out like the official node:20-bookworm-slim.
standin() {
  need debootstrap
  local node_bin npm_dir version tarball root
  node_bin=$(readlink -f "$(command -v node)")
  version=$("$node_bin" --version)
  case $version in v20.*) ;; *) log "the stand-in needs Node 20 on this machine (found $version)"; exit 1 ;; esac
  npm_dir=$(dirname "$(readlink -f "$(command -v npm)")")/..
  npm_dir=$(cd "$npm_dir" && pwd)
  tarball=$cache/node-20-bookworm-slim-standin-$version.tar
  if [ ! -f "$tarball" ]; then
    root=$(mktemp -d "$cache/standin-root.XXXXXX")
    log "debootstrap bookworm (minbase) into $root"
    debootstrap --variant=minbase bookworm "$root" http://deb.debian.org/debian >"$cache/debootstrap.log" 2>&1 \
      || { tail -n 20 "$cache/debootstrap.log" >&2; rm -rf "$root"; exit 1; }
    install -D -m 0755 "$node_bin" "$root/usr/local/bin/node"
    mkdir -p "$root/usr/local/lib/node_modules" "$root/usr/local/include"
    cp -a "$npm_dir" "$root/usr/local/lib/node_modules/npm"
    ln -sf ../lib/node_modules/npm/bin/npm-cli.js "$root/usr/local/bin/npm"
    ln -sf ../lib/node_modules/npm/bin/npx-cli.js "$root/usr/local/bin/npx"
    if [ -d /usr/include/node ]; then cp -a /usr/include/node "$root/usr/local/include/node"; fi
    chroot "$root" groupadd --gid 1000 node
    chroot "$root" useradd --uid 1000 --gid node --shell /bin/bash --create-home node
    install -D -m 0644 /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
    rm -rf "$root/var/cache/apt/archives/"*.deb "$root/var/lib/apt/lists/"*
    tar -C "$root" -cf "$tarball.tmp" .
    mv "$tarball.tmp" "$tarball"
    rm -rf "$root"
  fi
  local -a quiet=()
  if [ "$(engine_name)" = podman ]; then quiet=(--quiet); fi
  engine import "${quiet[@]}" \
    --change 'ENV NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["node"]' \
    "$tarball" "$base" >/dev/null
}

base_image() {
  if image_exists "$base"; then return 0; fi
  local name; name=$(engine_name)
  if [ "$name" = podman ]; then setup_podman; fi
  if timeout 60 "$name" pull -q "$base" >/dev/null 2>&1; then log "pulled $base"; return 0; fi
  log "$base cannot be pulled (no Docker Hub here): using a stand-in, Debian bookworm with this machine's Node $(node --version) (../shared/notes/containers.md)"
  standin
}

build() {
  base_image
  local t0=$SECONDS
  local -a args=(build -t "$image" --network host "$repo")
  if [ "$(engine_name)" = podman ]; then args=(build --format docker -t "$image" --pull=never --network host "$repo"); fi
  engine "${args[@]}" >"$cache/image-build.log" 2>&1 || { tail -n 40 "$cache/image-build.log" >&2; exit 1; }
  local size
  size=$(engine image inspect --format '{{.Size}}' "$image")
  log "built $image with $(engine_name) in $((SECONDS - t0)) s: $((size / 1024 / 1024)) MiB"
}

case ${1:-} in
  build) build ;;
  engine) shift; engine "$@" ;;
  which) engine_name ;;
  *) echo "usage: $0 build|engine ARGS...|which" >&2; exit 2 ;;
esac
