#!/usr/bin/env bash
# The device network stack end to end: builds the test, creates a network namespace with a TAP
# device in it (private addresses that exist only inside the namespace), and runs the test in
# it; the test starts and restarts mosquitto itself, listening on the TAP's address. Everything
# is removed on exit, whatever happens. Needs root, iproute2 and mosquitto. Bounded in time.
set -euo pipefail
cd "$(dirname "$0")"

NS="shearwater-test-$$"
TAP=swtap0
BROKER_ADDR=10.77.0.1/24   # the kernel's side of the TAP, where mosquitto listens
work=$(mktemp -d)

cleanup() {
  status=$?
  if ip netns list 2>/dev/null | grep -qw "$NS"; then
    # Only processes this script started live in the namespace.
    for pid in $(ip netns pids "$NS" 2>/dev/null); do kill "$pid" 2>/dev/null || true; done
    ip netns del "$NS" || true
  fi
  if [ "$status" -ne 0 ] && [ -s "$work/mosquitto.log" ]; then
    echo "--- mosquitto log (last 30 lines)"; tail -n 30 "$work/mosquitto.log"
  fi
  rm -rf "$work"
  exit "$status"
}
trap cleanup EXIT INT TERM

for tool in ip mosquitto; do
  command -v "$tool" >/dev/null || { echo "netns-test: $tool is missing"; exit 1; }
done

timeout 600 cargo build --quiet
bin="$PWD/target/debug/shearwater-netns-test"

ip netns add "$NS"
ip -n "$NS" link set lo up
ip -n "$NS" tuntap add dev "$TAP" mode tap
ip -n "$NS" addr add "$BROKER_ADDR" dev "$TAP"
ip -n "$NS" link set "$TAP" up

cat > "$work/mosquitto.conf" <<CONF
user root
listener 1883 ${BROKER_ADDR%/*}
allow_anonymous true
persistence false
log_dest file $work/mosquitto.log
log_type all
connection_messages true
CONF

TAP="$TAP" MOSQUITTO_CONF="$work/mosquitto.conf" MOSQUITTO_LOG="$work/mosquitto.log" \
  timeout 120 ip netns exec "$NS" "$bin"
