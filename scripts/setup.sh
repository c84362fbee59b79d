#!/usr/bin/env bash
# Idempotent set-up used by `make demo` and `make test`: a .venv with everything pinned in
# constraints.txt, the Debian packages some tests need (when root), and external tools.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv with $($PYTHON --version)"
  "$PYTHON" -m venv .venv
fi
echo "==> installing Python packages (pinned by constraints.txt)"
# pip 23's resolver backtracks for ~12 min on dvc[s3]+moto; a current pip resolves in seconds.
.venv/bin/python -m pip install -q --disable-pip-version-check -U "pip>=25"
.venv/bin/python -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[dev]'

# Debian packages: nginx-light + wrk (file server and its benchmark), libb64-0d (perf_analyzer),
# iproute2 (network-namespace test hosts).
APT_PACKAGES="nginx-light wrk libb64-0d iproute2"
missing=""
for p in $APT_PACKAGES; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "==> apt-get install$missing"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
  else
    echo "!! not root: install these Debian packages for the full suite:$missing"
    echo "!! (tests that need them skip and say so)"
  fi
fi

echo "==> external tools"
.venv/bin/harness tools install
echo "==> set-up done"
