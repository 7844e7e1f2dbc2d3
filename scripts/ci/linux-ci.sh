#!/usr/bin/env bash
# The steps of .github/workflows/ci.yml on a GitHub ubuntu runner: what .ci/run runs (make
# deploy, then make test with the nspawn test hosts), as root through sudo, as the project's
# own CI runs it; and the cache of what the tests build once (the pinned LiteLLM venv, the
# test hosts' root filesystem and apt cache, the Windows wheelhouse).
#
#   scripts/ci/linux-ci.sh restore   unpack .ci-cache/pf-cache.tar (if the cache had it)
#   scripts/ci/linux-ci.sh run       .ci/run as root, PF_CACHE kept
#   scripts/ci/linux-ci.sh save      pack PF_CACHE into .ci-cache/pf-cache.tar for actions/cache
#
# The cache travels as a tar made by root: the root filesystem's owners and modes must
# survive, which actions/cache (a tar made by the runner user) would not keep.
set -euo pipefail
cd "$(dirname "$0")/../.."

PF_CACHE="${PF_CACHE:-/var/cache/provider-fallback-ci}"
ARCHIVE=".ci-cache/pf-cache.tar"
export PF_CACHE

case "${1:-}" in
  restore)
    if [[ -f "$ARCHIVE" ]]; then
      sudo mkdir -p "$PF_CACHE"
      sudo tar --extract --preserve-permissions --same-owner --numeric-owner \
        --file "$ARCHIVE" --directory "$PF_CACHE"
      echo "restored $(du -sh "$ARCHIVE" | cut -f1) of cache into $PF_CACHE"
    else
      echo "no cache archive: the tests build what they need (about 3 minutes more)"
    fi
    ;;
  run)
    sudo env PF_CACHE="$PF_CACHE" CI="${CI:-}" GITHUB_ACTIONS="${GITHUB_ACTIONS:-}" .ci/run
    ;;
  save)
    mkdir -p "$(dirname "$ARCHIVE")"
    if sudo test -d "$PF_CACHE"; then
      sudo tar --create --numeric-owner --file "$ARCHIVE" --directory "$PF_CACHE" .
      sudo chown "$(id -u):$(id -g)" "$ARCHIVE"
    fi
    ;;
  *)
    echo "usage: $0 restore|run|save" >&2
    exit 2
    ;;
esac
