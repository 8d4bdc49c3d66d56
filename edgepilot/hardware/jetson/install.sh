#!/usr/bin/env bash
# Install the edgepilot UE agent on a Jetson. Two modes:
#
# 1. From a copy of the repository or with a wheel (run on the board as root):
#      sudo ./install.sh --ue-id ue-007 --edge-id 1 --broker broker.lan:8883 \
#           --ca ca.pem --trusted-key fleet.pub --password-file ue-007.pass [--wheel edgepilot-*.whl]
#    Installs a venv in /opt/edgepilot (base install only: numpy, onnxruntime, grpcio,
#    paho-mqtt; no torch), the trusted bundle key, the broker CA, the per-UE credentials,
#    and the systemd unit; then enables and starts it. PREFIX / SYSTEMD_DIR / ETC_DIR can be
#    overridden (tests install into a scratch root).
#
# 2. From a payload staged by `edgepilot flash` (what `edgepilot flash` runs over SSH):
#      install.sh --payload STAGING_DIR --release ID [--prefix /opt/edgepilot] [--no-systemd]
#                 [--python PYTHON] [--offline-deps]
#      install.sh --rollback [--prefix /opt/edgepilot] [--no-systemd]
#    Checks the SHA-256 of every staged file (SHA256SUMS), then builds PREFIX/releases/ID:
#    a virtual environment (venv/) with the staged edgepilot wheel installed (base install,
#    no extras: no torch) beside the policy bundle, agent.env, trusted key and unit;
#    verifies the bundle and the hardware profile with the code it just installed; only
#    then switches PREFIX/current to the new release (atomic rename of a symlink) and keeps
#    the one it replaced as PREFIX/previous. Any failure before the switch removes the new
#    release and leaves the running install as it was. pip fetches the wheel's
#    dependencies from the package index; --offline-deps: none are fetched, the venv sees
#    the packages --python already has (provisioned images, tests) and only the wheel is
#    installed. --no-systemd: no unit installed, no user created, nothing started; runs
#    unprivileged into any --prefix. Without it the unit goes to SYSTEMD_DIR and the
#    service restarts.
#
# Python: the agent needs 3.8 or newer. Without --python the first of python3,
# python3.13 ... python3.8 that is >= 3.8 and has the venv module is used: on JetPack 4.6
# (Ubuntu 18.04, python3 is 3.6) that is python3.8 (apt-get install python3.8 python3.8-venv),
# on JetPack 6 (Ubuntu 22.04) python3 (3.10).
set -euo pipefail
unset PYTHONPATH PYTHONHOME  # the release is checked with its own code only (the unit sets neither)
PREFIX=${PREFIX:-/opt/edgepilot}
ETC_DIR=${ETC_DIR:-/etc/edgepilot}
SYSTEMD_DIR=${SYSTEMD_DIR:-/etc/systemd/system}
SRC=$(cd "$(dirname "$0")/../../.." && pwd)  # the source tree that holds edgepilot/
UE_ID= EDGE_ID= BROKER= CA= KEY= PASSFILE= WHEEL= PROFILE=${PROFILE:-jetson-nano} NO_START=${NO_START:-0}
PAYLOAD= RELEASE= ROLLBACK=0 NO_SYSTEMD=0 OFFLINE_DEPS=0
PY=${PYTHON:-}
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
    --prefix) PREFIX=$2; shift 2;;
    --python) PY=$2; shift 2;;
    --payload) PAYLOAD=$2; shift 2;;
    --release) RELEASE=$2; shift 2;;
    --rollback) ROLLBACK=1; shift;;
    --no-systemd) NO_SYSTEMD=1; NO_START=1; shift;;
    --offline-deps) OFFLINE_DEPS=1; shift;;
    *) echo "install.sh: unknown argument $1" >&2; exit 2;;
  esac
done

die() { echo "install.sh: $*" >&2; exit "${EXIT:-1}"; }

MIN_PY="3.8"
py_ok() {  # py_ok PYTHON: it runs, is >= 3.8 and can create a venv with pip
  command -v "$1" >/dev/null 2>&1 \
    && "$1" -c 'import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 8))' >/dev/null 2>&1
}
pick_python() {  # sets PY: the --python given (checked), else the first usable candidate
  if [ -n "$PY" ]; then
    command -v "$PY" >/dev/null 2>&1 || EXIT=5 die "no Python '$PY' on this board (--python / --remote-python)"
    py_ok "$PY" || EXIT=5 die "$PY is Python $("$PY" -c 'import platform; print(platform.python_version())' 2>/dev/null || echo '?') or lacks the venv module; the agent needs Python >= $MIN_PY with venv (Ubuntu 18.04 / JetPack 4.6: apt-get install python3.8 python3.8-venv)"
    return 0
  fi
  local c found=""
  for c in python3 python3.13 python3.12 python3.11 python3.10 python3.9 python3.8; do
    if py_ok "$c"; then PY=$c; return 0; fi
    command -v "$c" >/dev/null 2>&1 && found="$found $c ($("$c" -c 'import platform; print(platform.python_version())' 2>/dev/null || echo '?'))"
  done
  EXIT=5 die "no Python >= $MIN_PY with the venv module on this board (found:${found:- none}); on JetPack 4.6 (Ubuntu 18.04): sudo apt-get install python3.8 python3.8-venv; or give --python"
}

# ------------------------------------------------------------------ flash mode helpers
switch_link() {  # switch_link LINK TARGET: atomic (rename of a fresh symlink over the old one)
  local tmp
  tmp="$(dirname "$1")/.$(basename "$1").$$.tmp"
  ln -sfn "$2" "$tmp"
  mv -Tf "$tmp" "$1"
}

restart_service() {  # --no-systemd sets NO_START too
  [ "$NO_START" = 1 ] && return 0
  command -v systemctl >/dev/null || { echo "edgepilot: no systemctl here; service not restarted"; return 0; }
  systemctl daemon-reload
  systemctl enable edgepilot-agent.service
  systemctl restart edgepilot-agent.service
}

flash_rollback() {
  [ -L "$PREFIX/previous" ] || EXIT=4 die "no previous release under $PREFIX to roll back to"
  local cur prev
  cur=$(readlink "$PREFIX/current" || true)
  prev=$(readlink "$PREFIX/previous")
  [ -d "$PREFIX/$prev" ] || EXIT=4 die "previous release $PREFIX/$prev is missing"
  switch_link "$PREFIX/current" "$prev"
  [ -z "$cur" ] || switch_link "$PREFIX/previous" "$cur"
  if [ "$NO_SYSTEMD" = 0 ] && [ -f "$PREFIX/current/edgepilot-agent.service" ]; then  # the unit of that release too
    mkdir -p "$SYSTEMD_DIR"
    install -m 0644 "$PREFIX/current/edgepilot-agent.service" "$SYSTEMD_DIR/edgepilot-agent.service"
  fi
  restart_service
  echo "edgepilot: rolled back: current -> $prev (previous -> ${cur:-none})"
}

env_value() { grep -m1 "^$1=" "$2" | cut -d= -f2- || true; }

flash_install() {
  [ -d "$PAYLOAD" ] || EXIT=2 die "payload directory $PAYLOAD does not exist"
  [[ "$RELEASE" =~ ^[A-Za-z0-9_.-]{1,80}$ ]] || EXIT=2 die "bad or missing --release '$RELEASE'"
  PAYLOAD=$(cd "$PAYLOAD" && pwd)
  # 1. every staged file must match the hash `edgepilot flash` computed before upload
  [ -f "$PAYLOAD/SHA256SUMS" ] || EXIT=3 die "payload has no SHA256SUMS"
  (cd "$PAYLOAD" && sha256sum --quiet --strict -c SHA256SUMS) >&2 || EXIT=3 die "payload SHA-256 check failed (see above)"
  for f in policy.bundle trusted_key.pub agent.env edgepilot-agent.service install.sh flash.json; do
    [ -f "$PAYLOAD/$f" ] || EXIT=3 die "payload lacks $f"
  done
  local wheels=("$PAYLOAD"/edgepilot-*-py3-none-any.whl)
  [ "${#wheels[@]}" = 1 ] && [ -f "${wheels[0]}" ] || EXIT=3 die "payload must hold exactly one edgepilot-*-py3-none-any.whl"
  local wheel=${wheels[0]}
  grep -q " $(basename "$wheel")\$" "$PAYLOAD/SHA256SUMS" || EXIT=3 die "$(basename "$wheel") is not in SHA256SUMS"
  local ue_id profile
  ue_id=$(env_value EDGEPILOT_UE_ID "$PAYLOAD/agent.env")
  profile=$(env_value EDGEPILOT_PROFILE "$PAYLOAD/agent.env")
  [[ "$ue_id" =~ ^[A-Za-z0-9_.-]{1,64}$ ]] || EXIT=2 die "bad EDGEPILOT_UE_ID '$ue_id' in agent.env"
  pick_python
  echo "edgepilot: installing agent $ue_id release $RELEASE into $PREFIX ($(basename "$wheel"), $PY $("$PY" -c 'import platform; print(platform.python_version())'))"
  mkdir -p "$PREFIX/releases"
  local rel="$PREFIX/releases/$RELEASE"
  [ ! -e "$rel" ] || EXIT=2 die "release $rel exists already"
  # 2. build the release beside the running one, at its final path (a venv cannot move);
  #    nothing points at it until step 5, and any failure removes it
  mkdir -m 0700 "$rel"
  trap 'rm -rf "$rel"' EXIT
  mkdir -p "$rel/trusted_keys"
  install -m 0644 "$PAYLOAD/policy.bundle" "$rel/policy.bundle"
  install -m 0644 "$PAYLOAD/trusted_key.pub" "$rel/trusted_keys/trusted_key.pub"
  [ ! -f "$PAYLOAD/ca.pem" ] || install -m 0644 "$PAYLOAD/ca.pem" "$rel/ca.pem"
  install -m 0600 "$PAYLOAD/agent.env" "$rel/agent.env"
  install -m 0644 "$PAYLOAD/flash.json" "$PAYLOAD/SHA256SUMS" "$wheel" "$rel/"
  install -m 0755 "$PAYLOAD/install.sh" "$rel/install.sh"
  # 3. the release's own venv with the wheel installed (base install: no extras, no torch)
  local venv="$rel/venv"
  "$PY" -m venv "$venv" || EXIT=5 die "$PY -m venv failed (Debian / Ubuntu: apt-get install python3-venv, or python3.8-venv)"
  local pip=("$venv/bin/python" -m pip install -q --disable-pip-version-check)
  if [ "$OFFLINE_DEPS" = 1 ]; then
    local purelib
    purelib=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    "$PY" -c 'import site; print("\n".join(site.getsitepackages()))' > "$purelib/edgepilot-offline-deps.pth"
    "${pip[@]}" --no-index --no-deps --ignore-installed "$rel/$(basename "$wheel")" || EXIT=5 die "pip could not install $(basename "$wheel")"
  else
    # the pip of Python 3.8's ensurepip predates the manylinux_2_27 wheels (onnxruntime on aarch64)
    "${pip[@]}" --upgrade pip || EXIT=5 die "pip could not upgrade itself (no package index reachable? then provision --python's packages and use --offline-deps)"
    "${pip[@]}" "$rel/$(basename "$wheel")" \
      || EXIT=5 die "pip could not install $(basename "$wheel") and its dependencies (no package index reachable? then use --offline-deps)"
  fi
  # the unit points at PREFIX/current, so a switch or a rollback needs no new unit
  local unit="$rel/edgepilot-agent.service"
  sed -e "s#/opt/edgepilot/venv/bin/edgepilot#$PREFIX/current/venv/bin/edgepilot#" \
      -e "s#/etc/edgepilot/agent.env#$PREFIX/current/agent.env#" \
      -e "s#/etc/edgepilot/trusted_keys#$PREFIX/current/trusted_keys --bundle $PREFIX/current/policy.bundle#" \
      -e "s#/etc/edgepilot/ca.pem#$PREFIX/current/ca.pem#" \
      "$PAYLOAD/edgepilot-agent.service" > "$unit"
  [ -f "$rel/ca.pem" ] || sed -i -e "s# --tls-ca $PREFIX/current/ca.pem##" "$unit"
  chmod 0644 "$unit"
  # 4. check the release with its own code before anything points at it
  local py="$venv/bin/python"
  "$py" -c 'import edgepilot.edge_agent, edgepilot.cli' || EXIT=5 die "the installed agent does not import (see above)"
  "$py" -c '
import sys
from edgepilot.hardware.profiles import ProfileError, load_profile
try:
    load_profile(sys.argv[1])
except ProfileError as err:
    sys.exit("install.sh: %s" % err)' "$profile" || EXIT=5 die "hardware profile '$profile' is not usable on this board"
  "$venv/bin/edgepilot" bundle verify "$rel/policy.bundle" -T "$rel/trusted_keys" >/dev/null \
    || EXIT=5 die "the policy bundle does not verify on the board"
  # 5. switch: current -> the new release, previous -> what current was
  chmod 0755 "$rel"
  trap - EXIT
  local old
  old=$(readlink "$PREFIX/current" 2>/dev/null || true)
  switch_link "$PREFIX/current" "releases/$RELEASE"
  [ -z "$old" ] || [ "$old" = "releases/$RELEASE" ] || switch_link "$PREFIX/previous" "$old"
  # keep current and previous only (hidden leftovers of the old layout's temp dirs too)
  local keep_cur keep_prev d
  keep_cur=$(readlink "$PREFIX/current"); keep_prev=$(readlink "$PREFIX/previous" 2>/dev/null || true)
  for d in "$PREFIX"/releases/*; do
    [ -d "$d" ] || continue
    case "releases/$(basename "$d")" in "$keep_cur"|"$keep_prev") ;; *) rm -rf "$d";; esac
  done
  if [ "$NO_SYSTEMD" = 0 ]; then
    mkdir -p "$SYSTEMD_DIR"
    install -m 0644 "$rel/edgepilot-agent.service" "$SYSTEMD_DIR/edgepilot-agent.service"
    [ "$NO_START" = 1 ] || id edgepilot >/dev/null 2>&1 || useradd --system --home /var/lib/edgepilot --shell /usr/sbin/nologin edgepilot 2>/dev/null || true
  fi
  restart_service
  "$PREFIX/current/venv/bin/edgepilot" --version
  echo "edgepilot: agent $ue_id installed: current -> releases/$RELEASE (previous -> ${old:-none})"
}

if [ "$ROLLBACK" = 1 ]; then flash_rollback; exit 0; fi
if [ -n "$PAYLOAD" ]; then flash_install; exit 0; fi

# ------------------------------------------------------------------ repository / wheel mode
for v in UE_ID EDGE_ID BROKER KEY; do
  [ -n "${!v}" ] || { echo "install.sh: --$(echo $v | tr 'A-Z_' 'a-z-') is required" >&2; exit 2; }
done
[[ "$UE_ID" =~ ^[A-Za-z0-9_.-]{1,64}$ ]] || { echo "install.sh: bad --ue-id $UE_ID" >&2; exit 2; }
echo "edgepilot: installing agent $UE_ID (edge $EDGE_ID, broker $BROKER) into $PREFIX"
mkdir -p "$PREFIX" "$ETC_DIR/trusted_keys"
if [ ! -x "$PREFIX/venv/bin/python" ]; then
  pick_python
  "$PY" -m venv "$PREFIX/venv" || { echo "install.sh: $PY -m venv failed" >&2; exit 5; }
fi
if [ "${SKIP_PIP:-0}" != 1 ]; then  # SKIP_PIP=1: the venv is provisioned already (image builds, tests)
  "$PREFIX/venv/bin/python" -m pip install -q --upgrade pip  # 3.8's ensurepip pip predates manylinux_2_27 wheels
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
install -m 0644 "$SRC/edgepilot/hardware/jetson/edgepilot-agent.service" "$SYSTEMD_DIR/edgepilot-agent.service"
[ "$NO_START" = 1 ] || id edgepilot >/dev/null 2>&1 || useradd --system --home /var/lib/edgepilot --shell /usr/sbin/nologin edgepilot 2>/dev/null || true
if [ "$NO_START" = 0 ] && command -v systemctl >/dev/null; then
  systemctl daemon-reload
  systemctl enable --now edgepilot-agent.service
fi
"$PREFIX/venv/bin/edgepilot" --version
echo "edgepilot: agent $UE_ID installed"
