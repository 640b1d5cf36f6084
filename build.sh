#!/usr/bin/env bash
# build.sh — one entry point for building, testing and demonstrating Studio Worker.
#   ./build.sh deps    install the system packages the build and the tests need (Debian/Ubuntu)
#   ./build.sh build   build bin/studio-worker and bin/studio-hub
#   ./build.sh test    deps, go vet, then every test with -race under a virtual display
#   ./build.sh demo    deps, build, then the end-to-end demo (a local hub, a worker, 12 jobs)
#   ./build.sh bench   the benchmark harness (prints a table, writes bench/results/latest.json)
set -euo pipefail
cd "$(dirname "$0")"

TAGS="migrated_fynedo"
APT_PACKAGES=(gcc pkg-config libgl1-mesa-dev xorg-dev xvfb xauth dbus-x11 espeak-ng imagemagick)

say() { printf '==> %s\n' "$*" >&2; }

version() { sed -n 's/^Version *= *"\(.*\)"/\1/p' FyneApp.toml | head -n1; }
ldflags() {
  local commit
  commit=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
  if [ -n "$(git status --porcelain 2>/dev/null | grep -v '^??' || true)" ]; then commit="$commit-dirty"; fi
  printf -- "-X main.version=%s -X main.commit=%s" "$(version)" "$commit"
}

cmd_deps() {
  if ! command -v go >/dev/null 2>&1; then
    say "Go is not installed: install Go 1.26 or newer from your distribution or go.dev, then run this again"
    exit 1
  fi
  if command -v apt-get >/dev/null 2>&1 && command -v dpkg-query >/dev/null 2>&1; then
    local missing=()
    for p in "${APT_PACKAGES[@]}"; do
      dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    if [ ${#missing[@]} -eq 0 ]; then
      say "deps: system packages already installed (${APT_PACKAGES[*]})"
    else
      local sudo=()
      if [ "$(id -u)" -ne 0 ]; then
        if command -v sudo >/dev/null 2>&1; then sudo=(sudo); else
          say "deps: missing ${missing[*]} and not root and no sudo: install them, then run this again"; exit 1
        fi
      fi
      say "deps: installing ${missing[*]} with apt-get"
      "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
      "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
  else
    say "deps: not a Debian/Ubuntu system; install the equivalents of: ${APT_PACKAGES[*]} (a C compiler, pkg-config, OpenGL and X11 development headers, Xvfb, xauth, dbus, espeak-ng, ImageMagick) — continuing"
  fi
  say "deps: downloading Go modules"
  go mod download
}

cmd_build() {
  mkdir -p bin
  say "build: bin/studio-worker (cgo, Fyne; the first build takes a few minutes)"
  go build -tags "$TAGS" -ldflags "$(ldflags)" -o bin/studio-worker .
  say "build: bin/studio-hub"
  go build -ldflags "$(ldflags)" -o bin/studio-hub ./cmd/studio-hub
}

cmd_test() {
  cmd_deps
  say "test: go vet"
  go vet -tags "$TAGS" ./...
  say "test: go test -race (under xvfb-run, so the window tests have a display)"
  local status=0
  xvfb-run -a -s "-screen 0 1280x1024x24" go test -race -tags "$TAGS" -timeout 20m ./... || status=$?
  if [ $status -eq 0 ]; then say "test: all tests passed"; else say "test: FAILED (exit $status)"; fi
  return $status
}

cmd_demo() {
  cmd_deps
  cmd_build
  say "demo: bin/studio-worker demo $*"
  exec bin/studio-worker demo "$@"
}

cmd_bench() {
  if [ ! -f bench/main.go ]; then
    say "bench: the benchmark harness is not built yet (issue: Benchmarks)"
    exit 2
  fi
  say "bench: go run ./bench (takes a few minutes; results in bench/results/latest.json)"
  go run -tags "$TAGS" ./bench "$@"
}

usage() { sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'; }

case "${1:-}" in
  deps) shift; cmd_deps "$@" ;;
  build) shift; cmd_build "$@" ;;
  test) shift; cmd_test "$@" ;;
  demo) shift; cmd_demo "$@" ;;
  bench) shift; cmd_bench "$@" ;;
  -h|--help|help|"") usage ;;
  *) say "unknown command: $1"; usage; exit 2 ;;
esac
