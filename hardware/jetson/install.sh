#!/usr/bin/env bash
# Flash the edgepilot UE agent onto a Jetson (run on the board as root, from a copy of
# the repository or an unpacked wheel directory):
#   sudo ./install.sh --ue-id ue-007 --edge-id 1 --broker broker.lan:8883 \
#        --ca ca.pem --trusted-key fleet.pub --password-file ue-007.pass [--wheel edgepilot-*.whl]
# Installs a venv in /opt/edgepilot (base install only: numpy, onnxruntime, grpcio,
# paho-mqtt; no torch), the trusted bundle key, the broker CA, the per-UE credentials,
# and the systemd unit; then enables and starts it. PREFIX / SYSTEMD_DIR / ETC_DIR can be
# overridden (tests install into a scratch root).
set -euo pipefail
PREFIX=${PREFIX:-/opt/edgepilot}
ETC_DIR=${ETC_DIR:-/etc/edgepilot}
SYSTEMD_DIR=${SYSTEMD_DIR:-/etc/systemd/system}
SRC=$(cd "$(dirname "$0")/../.." && pwd)
UE_ID= EDGE_ID= BROKER= CA= KEY= PASSFILE= WHEEL= PROFILE=${PROFILE:-jetson-nano} NO_START=${NO_START:-0}
while [ $# -gt 0 ]; do
  case "$1" in
    --ue-id) UE_ID=$2; shift 2;;
    --edge-id) EDGE_ID=$2; shift 2;;
    --broker) BROKER=$2; shift 2;;
    --ca) CA=$2; shift 2;;
    --trusted-key) KEY=$2; shift 2;;
    --password-file) PASSFILE=$2; shift 2;;
    --wheel) WHEEL=$2; shift 2;;
    --profile) PROFILE=$2; shift 2;;
    --no-start) NO_START=1; shift;;
    *) echo "install.sh: unknown argument $1" >&2; exit 2;;
  esac
done
for v in UE_ID EDGE_ID BROKER KEY; do
  [ -n "${!v}" ] || { echo "install.sh: --$(echo $v | tr 'A-Z_' 'a-z-') is required" >&2; exit 2; }
done
[[ "$UE_ID" =~ ^[A-Za-z0-9_.-]{1,64}$ ]] || { echo "install.sh: bad --ue-id $UE_ID" >&2; exit 2; }
PY=${PYTHON:-python3}
echo "edgepilot: installing agent $UE_ID (edge $EDGE_ID, broker $BROKER) into $PREFIX"
mkdir -p "$PREFIX" "$ETC_DIR/trusted_keys"
[ -x "$PREFIX/venv/bin/python" ] || "$PY" -m venv "$PREFIX/venv"
if [ "${SKIP_PIP:-0}" != 1 ]; then  # SKIP_PIP=1: the venv is provisioned already (image builds, tests)
  if [ -n "$WHEEL" ]; then "$PREFIX/venv/bin/pip" install -q "$WHEEL"; else "$PREFIX/venv/bin/pip" install -q "$SRC"; fi
fi
install -m 0644 "$KEY" "$ETC_DIR/trusted_keys/$(basename "$KEY")"
[ -z "$CA" ] || install -m 0644 "$CA" "$ETC_DIR/ca.pem"
umask 077
{
  echo "EDGEPILOT_UE_ID=$UE_ID"
  echo "EDGEPILOT_EDGE_ID=$EDGE_ID"
  echo "EDGEPILOT_BROKER=$BROKER"
  echo "EDGEPILOT_PROFILE=$PROFILE"
  echo "EDGEPILOT_MQTT_USERNAME=$UE_ID"
  [ -z "$PASSFILE" ] || echo "EDGEPILOT_MQTT_PASSWORD=$(cat "$PASSFILE")"
} > "$ETC_DIR/agent.env"
install -m 0644 "$SRC/hardware/jetson/edgepilot-agent.service" "$SYSTEMD_DIR/edgepilot-agent.service"
[ "$NO_START" = 1 ] || id edgepilot >/dev/null 2>&1 || useradd --system --home /var/lib/edgepilot --shell /usr/sbin/nologin edgepilot 2>/dev/null || true
if [ "$NO_START" = 0 ] && command -v systemctl >/dev/null; then
  systemctl daemon-reload
  systemctl enable --now edgepilot-agent.service
fi
"$PREFIX/venv/bin/edgepilot" --version
echo "edgepilot: agent $UE_ID installed"
