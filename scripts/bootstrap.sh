#!/usr/bin/env bash
# Sets up everything `make test` / `make demo` need on a fresh machine:
# Debian packages the tests talk to (Mosquitto, sshd, the Fashion-MNIST data set)
# and a virtual environment with edgepilot and all its extras.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}

# Debian packages: binary -> package. Installed only when missing, and only where we can.
declare -A need=(
  [/usr/sbin/mosquitto]=mosquitto
  [/usr/bin/mosquitto_pub]=mosquitto-clients
  [/usr/sbin/sshd]=openssh-server
  [/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz]=dataset-fashion-mnist
)
missing=()
for path in "${!need[@]}"; do [ -e "$path" ] || missing+=("${need[$path]}"); done
if [ ${#missing[@]} -gt 0 ]; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    echo "bootstrap: installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "bootstrap: warning: missing Debian packages (${missing[*]}); run as root or install them; tests that need them will fail" >&2
  fi
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo "bootstrap: creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi
echo "bootstrap: installing edgepilot[dev] into $VENV (torch ${TORCH_VERSION:-2.13.0} CPU)"
"$VENV/bin/pip" install -q --disable-pip-version-check -e '.[dev]' 2>&1 | grep -v "^WARNING: Location" || true
"$VENV/bin/python" -c "import edgepilot.edge_agent, edgepilot.cloud_trainer, torch; print('bootstrap: ok, torch', torch.__version__)"
