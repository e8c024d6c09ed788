#!/usr/bin/env bash
# Flash and RAM that the shearwater client path adds to a Cortex-M4 firmware
# (thumbv7em-none-eabihf, LTO, one codegen unit, panic = abort): for each application
# feature set, opt-level "s" and "z", defmt off and on, the client firmware minus the empty
# firmware of the same setup, section by section. Then the client's state and future sizes,
# printed by the same firmware on QEMU's Cortex-M4 (skipped if qemu-system-arm is missing).
#
# Usage: size/report.sh     prints the table (markdown) and the RAM figures. Over the budget it
#        says so; with SIZE_ENFORCE=1 it also exits 1 (SIZE_BUDGET sets the budget in bytes).
set -euo pipefail
cd "$(dirname "$0")/firmware"

BUDGET=${SIZE_BUDGET:-10240}   # bytes of flash for the client path at opt-level "s"
TARGET=thumbv7em-none-eabihf
sysroot=$(rustc --print sysroot)
tools="$sysroot/lib/rustlib/$(rustc -vV | sed -n 's/^host: //p')/bin"
SIZE="$tools/llvm-size"
NM="$tools/llvm-nm"
if [ ! -x "$SIZE" ]; then
  rustup component add llvm-tools >/dev/null
fi

# name | cargo features
SETS=(
  "QoS 0 only|"
  "QoS 1|qos1"
  "QoS 1+2|qos2"
)

# section sizes of one ELF: "text rodata data bss"
sections() {
  "$SIZE" -A "$1" | awk '
    $1 == ".text" { t = $2 } $1 == ".rodata" { r = $2 }
    $1 == ".data" { d = $2 } $1 == ".bss" { b = $2 } $1 == ".uninit" { b += $2 }
    END { print t + 0, r + 0, d + 0, b + 0 }'
}

# bytes of compiler-builtins routines (memcpy, memmove, memset, 64-bit division, ...) in an ELF:
# every firmware with a network stack links them anyway, so the table shows them apart
builtins() {
  "$NM" --print-size --size-sort --radix=d -C "$1" | awk '
    $4 ~ /compiler_builtins|^__aeabi_|^mem(cpy|move|set|cmp)$|^__u?(div|mod)/ { s += $2 }
    END { print s + 0 }'
}

over=0
printf '| application uses | opt | defmt | .text | .rodata | .data | .bss | flash | of which compiler-builtins |\n'
printf '|---|---|---|---:|---:|---:|---:|---:|---:|\n'
for set in "${SETS[@]}"; do
  name=${set%%|*}
  features=${set#*|}
  for defmt in off on; do
    f=$features
    if [ "$defmt" = on ]; then f="${f:+$f,}defmt"; fi
    for profile in release release-z; do
      cargo build --quiet --profile "$profile" --features "$f" --bins >&2
      dir="target/$TARGET/$profile"
      read -r ct cr cd cb < <(sections "$dir/client")
      read -r et er ed eb < <(sections "$dir/empty")
      t=$((ct - et)) r=$((cr - er)) d=$((cd - ed)) b=$((cb - eb))
      flash=$((t + r + d))
      rt=$(($(builtins "$dir/client") - $(builtins "$dir/empty")))
      opt=s; [ "$profile" = release-z ] && opt=z
      printf '| %s | %s | %s | %d | %d | %d | %d | %d (%s KiB) | %d |\n' \
        "$name" "$opt" "$defmt" "$t" "$r" "$d" "$b" "$flash" \
        "$(awk -v f="$flash" 'BEGIN { printf "%.1f", f / 1024 }')" "$rt"
      if [ "$opt" = s ] && [ "$flash" -gt "$BUDGET" ]; then over=1; fi
    done
  done
done

echo
echo "RAM outside these sections (the client lives in the application's task):"
if command -v qemu-system-arm >/dev/null; then
  cargo build --quiet --release --features qos1,report --bin client >&2
  timeout 60 qemu-system-arm -machine mps2-an386 -cpu cortex-m4 -nographic \
    -semihosting-config enable=on,target=native \
    -kernel "target/$TARGET/release/client" | sed 's/^/  /'
else
  echo "  (qemu-system-arm not installed: state and future sizes skipped)"
fi

if [ "$over" = 1 ]; then
  echo "OVER BUDGET: the client path takes more than $BUDGET bytes of flash at opt-level s"
  [ "${SIZE_ENFORCE:-0}" = 1 ] && exit 1
fi
exit 0
