#!/usr/bin/env bash
# Idempotent set-up used by `make demo` and `make test`: a .venv with everything pinned in
# constraints.txt, the Debian packages some tests need (when root), and external tools.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

# Own venvs for the OIP servers the `harness verify inference` tests run against: MLServer brings
# protobuf 6 / grpcio of its own, KServe needs numpy 2; neither can share .venv. A venv that
# cannot be made is reported and skipped (its tests then skip and say why). They depend on nothing
# else here, so they are built in the background while .venv installs (about 2 min saved on a
# fresh clone); each one's output is shown once it is done.
oip_venv() {
  local venv=$1 dir=".work/venvs/$1" req="tests/integration/oip/requirements-$1.txt"
  local start=$SECONDS fresh=""
  [ -x "$dir/bin/python" ] || fresh=1
  echo "==> $dir (${fresh:+creating, }pinned by $req)"
  # pip install on satisfied pins is a quick no-op; changed pins are applied in place.
  if { [ -z "$fresh" ] || { "$PYTHON" -m venv "$dir" \
         && "$dir/bin/python" -m pip install -q --disable-pip-version-check -U "pip>=25"; }; } \
     && "$dir/bin/python" -m pip install -q --disable-pip-version-check -r "$req"; then
    echo "==> $dir ready ($((SECONDS - start)) s)"
  else
    echo "!! could not set up $dir (see above); the $venv OIP server tests will skip and say so"
  fi
}
oip_logs=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$oip_logs"' EXIT
for venv in mlserver kserve; do
  oip_venv "$venv" > "$oip_logs/$venv.log" 2>&1 &
done

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

wait
cat "$oip_logs/mlserver.log" "$oip_logs/kserve.log"

echo "==> external tools"
.venv/bin/harness tools install
echo "==> set-up done"
