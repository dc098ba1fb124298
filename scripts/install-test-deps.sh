#!/usr/bin/env bash
# Install the dependencies of Mantle's integration tests: Debian's dnsutils
# (dig, for the DNS tests), chromium and chromium-driver (the web UI's browser
# tests), and the Python clients (pymesos, marathon-python) in a private venv.
#
#   MANTLE_TEST_VENV   venv path (default: <repo>/target/test-venv)
#   MANTLE_PYTHON      interpreter used to create the venv (default: python3)
#
# Idempotent: a marker file inside the venv makes a second run a quick no-op.
# The tests run e.g. "$MANTLE_TEST_VENV/bin/python crates/mantle/tests/py/...".
set -euo pipefail

# Debian packages, installed only when their command is missing: dnsutils (dig, for the
# DNS tests), chromium and chromium-driver (headless browser tests of the web UI), iptables
# and iproute2 (the network partition test, run in a private network namespace), and
# containernetworking-plugins (the CNI isolator's tests).
APT_UPDATED=0
# A command given as an absolute path is looked for at that path (CNI plugins are not on PATH).
have() {
    if [[ "$1" == /* ]]; then [[ -x "$1" ]]; else command -v "$1" >/dev/null 2>&1; fi
}
apt_install() {
    local command="$1" package="$2"
    if have "$command"; then
        return 0
    fi
    echo "install-test-deps: installing $package ($command)" >&2
    local sudo=()
    if [[ "$(id -u)" != 0 ]]; then sudo=(sudo); fi
    if [[ "$APT_UPDATED" == 0 ]]; then
        "${sudo[@]}" apt-get update -qq
        APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "$package" >/dev/null
    if ! have "$command"; then
        echo "install-test-deps: FAILED: $command not found after installing $package" >&2
        exit 1
    fi
}
apt_install dig dnsutils
apt_install chromium chromium
apt_install chromedriver chromium-driver
apt_install iptables iptables
apt_install ip iproute2
# The CNI plugins (the network/cni isolator's tests use `loopback`).
apt_install /usr/lib/cni/loopback containernetworking-plugins

# Docker for the docker containerizer tests: Debian's docker.io and busybox-static, a test
# daemon of our own (no bridge, no iptables: tests use host networking only) on its own socket,
# and a tiny local image imported from busybox (no registry is reachable).
DOCKER_SOCK=/run/mantle-test-docker/docker.sock
DOCKER_IMAGE=mantle-test/busybox:latest
if ! command -v dockerd >/dev/null 2>&1 || [[ ! -x /bin/busybox ]]; then
    echo "install-test-deps: installing docker.io and busybox-static" >&2
    SUDO=()
    if [[ "$(id -u)" != 0 ]]; then SUDO=(sudo); fi
    "${SUDO[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq docker.io busybox-static >/dev/null
fi
if ! docker -H "unix://$DOCKER_SOCK" version >/dev/null 2>&1; then
    echo "install-test-deps: starting the test Docker daemon on $DOCKER_SOCK" >&2
    mkdir -p /run/mantle-test-docker /var/lib/mantle-test-docker
    setsid dockerd --bridge=none --iptables=false --ip6tables=false \
        --data-root /var/lib/mantle-test-docker --exec-root /run/mantle-test-docker/exec \
        --pidfile /run/mantle-test-docker/dockerd.pid -H "unix://$DOCKER_SOCK" \
        >/run/mantle-test-docker/dockerd.log 2>&1 < /dev/null &
    for _ in $(seq 1 100); do
        docker -H "unix://$DOCKER_SOCK" version >/dev/null 2>&1 && break
        sleep 0.2
    done
    if ! docker -H "unix://$DOCKER_SOCK" version >/dev/null 2>&1; then
        tail -20 /run/mantle-test-docker/dockerd.log >&2 || true
        echo "install-test-deps: FAILED: the test Docker daemon did not start" >&2
        exit 1
    fi
fi
if ! docker -H "unix://$DOCKER_SOCK" image inspect "$DOCKER_IMAGE" >/dev/null 2>&1; then
    IMG_DIR="$(mktemp -d)"
    mkdir -p "$IMG_DIR/bin" "$IMG_DIR/tmp"
    cp /bin/busybox "$IMG_DIR/bin/busybox"
    for c in sh echo sleep cat ls true false env printf; do ln -s busybox "$IMG_DIR/bin/$c"; done
    tar -C "$IMG_DIR" -c . | docker -H "unix://$DOCKER_SOCK" import - "$DOCKER_IMAGE" >/dev/null
    rm -rf "$IMG_DIR"
fi

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${MANTLE_TEST_VENV:-$REPO_ROOT/target/test-venv}"
PYTHON="${MANTLE_PYTHON:-python3}"

# Bump this string whenever the set of packages below changes.
DEPS_VERSION="pymesos==0.3.15 http-parser==0.9.0 cython<3 marathon==0.13.0 v2"
MARKER="$VENV/.mantle-test-deps"
PY="$VENV/bin/python"

verify() {
    "$PY" - <<'PYEOF'
import http_parser.parser  # C extension: fails if built against Cython 3
import pymesos
from pymesos import MesosSchedulerDriver, MesosExecutorDriver, encode_data, decode_data
print("pymesos ok:", pymesos.__file__)
import marathon
from marathon import MarathonClient, MarathonApp
print("marathon ok:", marathon.__file__)
PYEOF
}

if [[ -x "$PY" && -f "$MARKER" && "$(cat "$MARKER")" == "$DEPS_VERSION" ]]; then
    exit 0
fi

echo "install-test-deps: setting up $VENV" >&2
if [[ ! -x "$PY" ]]; then
    "$PYTHON" -m venv "$VENV"
fi
rm -f "$MARKER"

PIP=("$PY" -m pip install --quiet --disable-pip-version-check)
"${PIP[@]}" --upgrade pip setuptools wheel
# http-parser 0.9.0 (a pymesos dependency) ships a parser.c generated by an
# old Cython that does not compile on Python >= 3.11 (longintrepr.h). Download
# the sdist, regenerate parser.c from parser.pyx with Cython < 3, and build it.
if ! "$PY" -c 'import http_parser.parser' 2>/dev/null; then
    "${PIP[@]}" 'cython<3'
    BUILD_DIR="$(mktemp -d)"
    trap 'rm -rf "$BUILD_DIR"' EXIT
    "$PY" -m pip download --quiet --disable-pip-version-check --no-deps \
        --no-binary :all: --dest "$BUILD_DIR" 'http-parser==0.9.0'
    tar -xzf "$BUILD_DIR"/http-parser-0.9.0.tar.gz -C "$BUILD_DIR"
    SRC="$BUILD_DIR/http-parser-0.9.0"
    rm -f "$SRC"/http_parser/parser.c "$SRC"/http_parser/*.so
    if ! (cd "$SRC" && "$VENV/bin/cython" http_parser/parser.pyx) >"$BUILD_DIR/cython.log" 2>&1; then
        cat "$BUILD_DIR/cython.log" >&2
        echo "install-test-deps: FAILED: cython could not regenerate http_parser/parser.c" >&2
        exit 1
    fi
    "${PIP[@]}" --no-build-isolation --no-deps --force-reinstall "$SRC"
fi
"${PIP[@]}" 'pymesos==0.3.15'
"${PIP[@]}" 'marathon==0.13.0'

if ! verify; then
    echo "install-test-deps: FAILED: pymesos / http_parser.parser not importable in $VENV" >&2
    exit 1
fi
echo "$DEPS_VERSION" > "$MARKER"
echo "install-test-deps: done ($VENV)" >&2
