#!/usr/bin/env bash
# usage: check_cuda_symbols.sh EMU_OBJECTS... -- CUDA_OBJECTS...
# Fails when a global symbol other than the cuda_/emu_ entries is defined both by the
# emulated and by the nvcc build of kernels/cuda: the linker would keep one body for
# both, and a GPU launch could run the emulated kernel or the reverse.
set -euo pipefail
emu=() cuda=() side=emu
for arg in "$@"; do
  if [ "$arg" = "--" ]; then side=cuda; continue; fi
  if [ $side = emu ]; then emu+=("$arg"); else cuda+=("$arg"); fi
done
globals() {  # defined global or weak symbols, mangled, minus the library runtime's
  nm --defined-only "$@" | awk '$2 ~ /^[TWVuBDR]$/ {print $3}' |
    grep -vE '^(cuda_|emu_|_ZNSt|_ZSt|_ZN9__gnu_cxx|DW\.ref\.)' | sort -u
}
both=$(comm -12 <(globals "${emu[@]}") <(globals "${cuda[@]}"))
if [ -n "$both" ]; then
  echo "kernels/cuda: symbols defined by both the emulated and the nvcc build (put them in an anonymous namespace):" >&2
  echo "$both" | c++filt | sed 's/^/  /' >&2
  exit 1
fi
