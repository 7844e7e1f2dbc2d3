#!/usr/bin/env bash
# Install the Debian packages the tests run for real, only when a tool is missing.
# --no-install-recommends: Prometheus would otherwise pull in node-exporter and friends.
# Services are not started here (policy-rc.d refuses on a machine without systemd as PID 1).
set -euo pipefail
missing=()
for tool in promtool amtool systemd-analyze stress-ng; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "installing Debian packages for: ${missing[*]}" >&2
if [ "$(id -u)" -ne 0 ]; then
  echo "need root to apt-get install $*; run: sudo apt-get install --no-install-recommends $*" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "$@" >/dev/null
