#!/usr/bin/env bash
# One-step setup of jpki-sim on Debian or Ubuntu: the PC/SC stack and this package.
#
#   bash tools/setup.sh            (as root, or as a user who may sudo)
#
# Installs what is missing, and only that (so a second run is quick):
#   - Debian packages: pcscd, vsmartcard-vpcd (the virtual reader driver), opensc,
#     pcsc-tools, libpcsclite-dev (to build pyscard), fonts-ipamj-mincho (IPAmj明朝, the
#     card-surface images' font), chromium and chromium-driver (the dashboard's browser
#     test), wrk (the OCSP benchmark's load generator), plus python3/pip/gcc when absent;
#   - the clients of the compatibility suite (tests/compat): libengine-pkcs11-openssl,
#     libnss3-tools, gnutls-bin, curl, iproute2, and pkcs11-provider where the
#     platform has it (Debian 13, Ubuntu 24.04; Debian 12 has none);
#   - this package with its dependencies (Starlette and uvicorn for the control service)
#     and its test dependencies (selenium drives the system chromium; PyKCS11,
#     python-pkcs11 and pyHanko for tests/compat): pip install -e '.[test]';
#   - JPEG 2000 for the card's photo: Pillow's wheels carry OpenJPEG; a Pillow built
#     without it is rebuilt against Debian's libopenjp2-7-dev.
# It does not start pcscd: `jpki-sim serve` does that when none runs (as root).
# PYTHON=/path/to/python picks the interpreter (default: python, else python3).
set -euo pipefail

cd "$(dirname "$0")/.."

say() { printf 'setup: %s\n' "$*" >&2; }

if [ "$(id -u)" -eq 0 ]; then
    SUDO=()
elif command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo)
else
    SUDO=()
fi

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

missing=()
for pkg in pcscd vsmartcard-vpcd opensc pcsc-tools libpcsclite-dev fonts-ipamj-mincho \
           chromium chromium-driver wrk \
           libengine-pkcs11-openssl libnss3-tools gnutls-bin curl iproute2; do
    installed "$pkg" || missing+=("$pkg")
done

PY="${PYTHON:-}"
if [ -z "$PY" ]; then
    PY="$(command -v python || true)"
    if [ -z "$PY" ]; then
        # the README runs `python -m pytest`: give Debian's python3 that name too
        missing+=(python3 python3-pip python3-venv python-is-python3)
        missing+=(gcc python3-dev)  # to build pyscard, which has no Linux wheel
        PY=python3
    fi
fi
if command -v "$PY" >/dev/null 2>&1; then
    "$PY" -m pip --version >/dev/null 2>&1 || missing+=(python3-pip)
    if ! "$PY" -c 'import smartcard' >/dev/null 2>&1; then
        # pyscard has no Linux wheel: pip builds it (needs a C compiler and Python.h)
        command -v gcc >/dev/null 2>&1 || missing+=(gcc)
        "$PY" - <<'PYEOF' >/dev/null 2>&1 || missing+=(python3-dev)
import os, sysconfig, sys
sys.exit(0 if os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")) else 1)
PYEOF
    fi
fi

if [ "${#missing[@]}" -gt 0 ]; then
    if ! command -v apt-get >/dev/null 2>&1; then
        say "no apt-get here: install ${missing[*]} with this system's package manager"
        exit 1
    fi
    if [ "$(id -u)" -ne 0 ] && [ "${#SUDO[@]}" -eq 0 ]; then
        say "need root (or sudo) to install: ${missing[*]}"
        exit 1
    fi
    say "installing ${missing[*]}"
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
    say "Debian packages already installed"
fi

# pkcs11-provider exists only on newer platforms: install it where apt knows it
if ! installed pkcs11-provider && command -v apt-cache >/dev/null 2>&1; then
    candidate="$(apt-cache policy pkcs11-provider 2>/dev/null | sed -n 's/ *Candidate: //p')"
    if [ -n "$candidate" ] && [ "$candidate" != "(none)" ]; then
        if [ "$(id -u)" -eq 0 ] || [ "${#SUDO[@]}" -gt 0 ]; then
            say "installing pkcs11-provider"
            "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
                apt-get install -y -qq --no-install-recommends pkcs11-provider >/dev/null
        fi
    fi
fi

pip_args=(-q)
export PIP_ROOT_USER_ACTION=ignore  # env, not the option: older pips do not know it
if "$PY" - <<'PYEOF'
import os, sys, sysconfig
# PEP 668: Debian marks its system python "externally managed"; a venv or pyenv is not
in_venv = sys.prefix != sys.base_prefix
marker = os.path.join(sysconfig.get_paths()["stdlib"], "EXTERNALLY-MANAGED")
sys.exit(0 if os.path.exists(marker) and not in_venv else 1)
PYEOF
then
    say "$PY is Debian's system python: installing with --break-system-packages"
    pip_args+=(--break-system-packages)
fi
say "pip install -e '.[test]' with $PY"
"$PY" -m pip install "${pip_args[@]}" -e '.[test]'

jp2() { "$PY" -c 'import sys; from PIL import features; sys.exit(0 if features.check("jpg_2000") else 1)' >/dev/null 2>&1; }
if ! jp2; then
    # a Pillow built from source without OpenJPEG: build it again with the headers present
    say "Pillow has no JPEG 2000: rebuilding it with libopenjp2-7-dev"
    if command -v apt-get >/dev/null 2>&1; then
        "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
            --no-install-recommends libopenjp2-7-dev libjpeg-dev zlib1g-dev libfreetype-dev \
            >/dev/null
    fi
    "$PY" -m pip install "${pip_args[@]}" --force-reinstall --no-binary Pillow Pillow
    jp2 || { say "Pillow still has no JPEG 2000 (OpenJPEG): install libopenjp2 and Pillow by hand"; exit 1; }
fi

if ! command -v jpki-sim >/dev/null 2>&1; then
    say "jpki-sim was installed outside PATH; add $("$PY" -c 'import sysconfig; print(sysconfig.get_path("scripts"))') (or ~/.local/bin) to PATH"
fi
say "done: run \`jpki-sim serve\` to serve the default card, \`jpki-sim doctor\` to check"
