#!/usr/bin/env bash
# Installs the brokers and the proxy the interop and gateway suites start themselves: mosquitto,
# RabbitMQ with its MQTT plugin (rabbitmq-server brings Erlang and epmd), and HAProxy. Debian only.
# Idempotent and quiet: does nothing when they are installed. The suites never use the system
# services; installing does not start them either.
set -euo pipefail

packages=(mosquitto rabbitmq-server haproxy)

missing=()
for package in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q '^install ok installed$'; then
    missing+=("$package")
  fi
done
if [ "${#missing[@]}" -eq 0 ]; then
  echo "brokers: ${packages[*]} already installed"
  exit 0
fi

sudo=()
if [ "$(id -u)" -ne 0 ]; then
  sudo=(sudo)
fi

# Keep the packages' maintainer scripts from starting the system brokers (the tests start
# their own on private ports): a temporary policy-rc.d, unless the machine has one already.
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
  trap '"${sudo[@]}" rm -f "$policy"' EXIT
  printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null
  "${sudo[@]}" chmod 755 "$policy"
fi

echo "brokers: installing ${missing[*]}"
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "brokers: mosquitto $(dpkg-query -W -f='${Version}' mosquitto)," \
  "rabbitmq-server $(dpkg-query -W -f='${Version}' rabbitmq-server)"
