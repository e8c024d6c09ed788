#!/usr/bin/env bash
# The board-level part of CI: flash and RAM of the client path, the codec and session on an
# emulated Cortex-M4, the embassy-net stack end to end against mosquitto in a network
# namespace, and the two firmware examples. Each crate is outside the library's workspace and
# builds in its own (git-ignored) target/ directory. Installs what it needs; run as root (the
# namespace test needs it), from anywhere.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TERM_COLOR=never
export CARGO_INCREMENTAL=0
started=$SECONDS
step() { printf '\n=== boards: %s (%ds)\n' "$*" "$((SECONDS - started))"; }

step "tools"
missing=()
command -v qemu-system-arm >/dev/null || missing+=(qemu-system-arm)
command -v ip >/dev/null || missing+=(iproute2)
command -v mosquitto >/dev/null || missing+=(mosquitto)
if [ ${#missing[@]} -gt 0 ]; then
  # Keep the packages' services from starting: the test runs its own mosquitto.
  policy=/usr/sbin/policy-rc.d
  added_policy=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod +x "$policy" && added_policy=1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  if [ "$added_policy" = 1 ]; then rm -f "$policy"; fi
fi
rustup target add thumbv7em-none-eabihf riscv32imc-unknown-none-elf >/dev/null
rustup component add llvm-tools >/dev/null

step "flash and RAM of the client path (size/report.sh)"
size/report.sh
# clippy on each crate right after its build, with the same profile, target and features: the
# dependencies' build scripts and proc macros are reused, so what is new is mostly the checks.
# Here two of the feature sets report.sh built, which between them cover every cfg in the crate.
(cd size/firmware && cargo clippy --release --bins --features qos2,defmt -- -D warnings)
(cd size/firmware && cargo clippy --release --bins --features qos1,report -- -D warnings)

step "codec and session on QEMU's Cortex-M4 (qemu/)"
(cd qemu && cargo run --release)
(cd qemu && cargo clippy --release -- -D warnings)

step "embassy-net over a TAP device against mosquitto in a network namespace (netns-test/)"
netns-test/run.sh
(cd netns-test && cargo clippy -- -D warnings)

step "firmware: NUCLEO-F429ZI (examples/stm32/)"
(cd examples/stm32 && cargo build --release)
(cd examples/stm32 && cargo clippy --release -- -D warnings)

step "firmware: ESP32-C3 (examples/esp32c3/)"
(cd examples/esp32c3 && cargo build --release)
(cd examples/esp32c3 && cargo clippy --release -- -D warnings)

step "done"
