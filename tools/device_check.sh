#!/usr/bin/env bash
# The checks a session with a lent GPU runs in its one device call (docs/kernels.md, "On
# a GPU"). That machine has the CUDA toolkit and driver but no network, no ../shared and
# perhaps none of the Debian -dev packages, so this has two halves:
#
#   make device-check                (here)  builds, then runs `tools/device_check.sh prepare`:
#                                    writes .device/ (git-ignored) with what the machine
#                                    lacks, found from this build rather than listed: the
#                                    shared libraries our programs load (ldd), the headers
#                                    the build includes from outside the tree (cc -M), a
#                                    link name for every -l of the link line, the CLIP
#                                    tokenizer folder, ../shared/data/dreambooth, cuDNN's
#                                    headers, the fonts cairo draws text with, and SD1.5's
#                                    tensor manifest (tools/sd15_manifest.py, run with
#                                    GOLDEN_PYTHON: torch, diffusers, transformers).
#   bash tools/device_check.sh       (there, one device call with carry=[".device"])
#                                    unpacks it, then runs the stages below within a budget
#                                    and prints a summary; logs go to $OUT.
#
# Device half, environment: OUT (default build/device-out), BUDGET_S (480: a stage that
# would start with less time left than it needs is skipped and says so), STAGES (default
# "env build test bench cli sd15 sanitizer all-tests"), JOBS (nproc), CUDA_ARCHS (90),
# GPU_SUITES (the suites of the first test-gpu pass: "rng tensor ops models train"),
# DEVICE_PYTHON (python3: writes the random SD1.5 of stage sd15, with numpy and safetensors).
# DEVICE_CHECK_GPU=cuda-emu runs the GPU stages on the emulator instead (a dry run of
# this script on a machine without a GPU; stage sd15 runs its programs on the CPU at 64x64).
set -u
cd "$(dirname "$0")/.." || exit 2
DEV=.device
BUILD=${BUILD:-build}

# --- prepare (here) ------------------------------------------------------------------------
prepare() {
    set -e
    for p in "$BUILD/run_tests" "$BUILD/sdft-sample" "$BUILD/sdft-train"; do
        [ -x "$p" ] || { echo "prepare: $p missing: run make device-check" >&2; exit 1; }
    done
    rm -rf "$DEV" && mkdir -p "$DEV"
    if [ -d .git ] && ! grep -qx '/.device/' .git/info/exclude 2>/dev/null; then
        echo '/.device/' >> .git/info/exclude
    fi
    local stage; stage=$(mktemp -d)
    mkdir -p "$stage/root" "$stage/lib"
    local flags cflags ldlibs cuda_home
    flags=$(make -s --no-print-directory BUILD="$BUILD" print-build-flags)
    cflags=$(echo "$flags" | sed -n 1p)
    ldlibs=$(echo "$flags" | sed -n 2p)
    cuda_home=$(dirname "$(dirname "$(command -v nvcc || echo /nonexistent/bin/nvcc)")")

    # Libraries: what the programs load here, less the C and compiler runtimes and
    # CUDA's (the device's own toolkit and compiler provide those).
    local p soname
    ldd "$BUILD"/run_tests "$BUILD"/sdft-* | awk '$2 == "=>" && $3 ~ /^\// {print $1, $3}' | sort -u |
        while read -r soname p; do
            case "$soname" in
            ld-linux*|libc.so*|libm.so*|libpthread*|libdl.so*|librt.so*|libresolv*|libutil*) continue ;;
            libstdc++*|libgcc_s*|libgomp*|libatomic*) continue ;;
            libcuda*|libcudart*|libcublas*|libnv*) continue ;;
            esac
            cp -L "$p" "$stage/lib/$soname"
        done
    # A link name (libX.so) for each -lX whose library was packed.
    for p in $ldlibs; do
        case "$p" in -l*) ;; *) continue ;; esac
        local name=${p#-l} file
        file=$(cc -print-file-name="lib$name.so")
        [ -e "$file" ] || continue
        soname=$(objdump -p "$(readlink -f "$file")" 2>/dev/null | awk '$1 == "SONAME" {print $2}')
        [ -n "$soname" ] && [ -e "$stage/lib/$soname" ] && ln -sf "$soname" "$stage/lib/lib$name.so"
    done

    # Headers: everything the build includes from outside the tree, save libc's, the
    # compiler's and CUDA's. Each #include <...> of our C sources is resolved on its own
    # with the build's flags (one the compiler cannot find here, such as cudnn.h, is
    # not ours to pack).
    local probe=$stage/probe.c headers=$stage/headers
    : > "$headers"
    grep -rhoE '^#include <[^>]+>' core kernels/*.h kernels/*.c kernels/ops kernels/cpu infer train data tools tests bench \
        --include='*.c' --include='*.h' | sort -u | while read -r line; do
        echo "$line" > "$probe"
        # shellcheck disable=SC2086
        cc $cflags -M -x c "$probe" 2>/dev/null | tr ' \\' '\n\n' | grep '^/' >> "$headers" || true
    done
    sort -u "$headers" | grep -v -e "^$cuda_home/" -e '^/usr/lib/gcc/' -e "^$probe\$" > "$headers.all" || true
    # Debian's C library headers are on every machine that compiles; a header no package
    # owns under this name (an alternatives link, such as cblas.h) is packed too.
    xargs dpkg -S < "$headers.all" 2>/dev/null | grep -E '^(libc6-dev|linux-libc-dev)(:[a-z0-9]+)?: ' |
        sed 's/^[^ ]* //' | sort -u > "$headers.libc" || true
    sort -u "$headers.all" | comm -23 - "$headers.libc" | while read -r h; do
        mkdir -p "$stage/root$(dirname "$h")" && cp -L "$h" "$stage/root$h"
    done
    # The folders a header may be found in, in the compiler's order: the build's -I
    # folders outside the tree, then the default ones.
    {
        for f in $cflags; do case "$f" in -I/*) echo "${f#-I}" ;; esac; done
        echo | cc -E -Wp,-v -x c - 2>&1 | sed -n 's/^ \(\/.*\)/\1/p'
    } | awk '!seen[$0]++' > "$stage/include-dirs"
    # cuDNN's headers, for bench_gpu's reference column where the device's toolkit has none.
    if ls "$cuda_home"/include/cudnn*.h > /dev/null 2>&1; then
        mkdir -p "$stage/cudnn/include" && cp -L "$cuda_home"/include/cudnn*.h "$stage/cudnn/include/"
    fi
    # Fonts for cairo's captions: the one fontconfig picks for sans-serif here.
    if command -v fc-match > /dev/null; then
        mkdir -p "$stage/fonts" && cp -L "$(fc-match -f '%{file}' sans-serif)" "$stage/fonts/"
    fi
    tar -C "$stage" -czf "$DEV/deps.tar.gz" root lib include-dirs $( [ -d "$stage/cudnn" ] && echo cudnn ) \
        $( [ -d "$stage/fonts" ] && echo fonts )
    rm -rf "$stage"

    # Data: the tokenizer derived here from ../shared/data/clip, the DreamBooth photos of
    # suite data. ../shared does not travel.
    if [ -f "$BUILD/clip-tokenizer/vocab.json" ]; then cp -r "$BUILD/clip-tokenizer" "$DEV/clip-tokenizer"
    else echo "prepare: no $BUILD/clip-tokenizer (no ../shared/data/clip here): its suites will be SKIPPED" >&2; fi
    local shared=${SDFT_SHARED:-../shared}
    if [ -d "$shared/data/dreambooth" ]; then mkdir -p "$DEV/shared/data" && cp -rL "$shared/data/dreambooth" "$DEV/shared/data/"; fi
    # SD1.5's tensor manifest (names, shapes, the init rule's scales), from diffusers and
    # transformers on the meta device: stage sd15 writes a random-weight SD1.5 from it.
    local py=${GOLDEN_PYTHON:-$( [ -x .venv-golden/bin/python ] && echo .venv-golden/bin/python || echo python3)} out
    if out=$("$py" tools/sd15_manifest.py "$DEV/sd15_manifest.json" 2>&1); then echo "$out" | tail -1
    else
        rm -f "$DEV/sd15_manifest.json"
        echo "prepare: no SD1.5 manifest ($py: $(echo "$out" | tail -1)): stage sd15 will be SKIPPED" >&2
    fi
    du -sh "$DEV" "$DEV"/*
    echo "prepare: done. One device call: run(command=\"bash tools/device_check.sh\", carry=[\".device\"], timeout_s=560)"
}

if [ "${1:-}" = prepare ]; then prepare; exit $?; fi
[ $# -eq 0 ] || { echo "usage: tools/device_check.sh [prepare]" >&2; exit 2; }

# --- device half (there) ---------------------------------------------------------------------
OUT=${OUT:-$PWD/build/device-out}
mkdir -p "$OUT"
BUDGET_S=${BUDGET_S:-480}
STAGES=${STAGES:-env build test bench cli sd15 sanitizer all-tests}
JOBS=${JOBS:-$(nproc)}
GPU=${DEVICE_CHECK_GPU:-cuda}
T0=$(date +%s)
SUMMARY=$OUT/summary.txt
: > "$SUMMARY"
left() { echo $((BUDGET_S - ($(date +%s) - T0))); }
note() { echo "$*" | tee -a "$SUMMARY"; }
# stage NAME NEEDED_S: whether to run it now (says why not)
stage() {
    case " $STAGES " in *" $1 "*) ;; *) return 1 ;; esac
    if [ "$(left)" -lt "$2" ]; then note "SKIP  $1: $(left) s of the budget left, needs ~$2 s"; return 1; fi
    echo "== $1 ($(left) s left)"
}
# step LOG LIMIT_S LABEL command...: runs it with a time limit (never past the budget
# by more than 30 s) and notes how it ended
step() {
    local log=$1 limit=$2 label=$3; shift 3
    local t; t=$(date +%s)
    [ $(($(left) + 30)) -lt "$limit" ] && limit=$(($(left) + 30))
    [ "$limit" -lt 10 ] && limit=10
    echo "-- $label: $*" >> "$log"
    timeout --signal=TERM --kill-after=10 "$limit" "$@" >> "$log" 2>&1
    local rc=$? dt=$(($(date +%s) - t))
    if [ $rc -eq 0 ]; then note "ok    $label (${dt} s)"
    elif [ $rc -eq 124 ] || [ $rc -eq 137 ]; then note "TIME  $label: stopped after $limit s"
    else note "FAIL  $label: exit $rc (${dt} s), see $(basename "$log")"; fi
    return $rc
}

# The packed libraries, headers and fonts.
W=${TMPDIR:-/tmp}/sdft-device
D=$W/deps
LINK_PACKED=
rm -rf "$D" && mkdir -p "$D"
if [ -f "$DEV/deps.tar.gz" ]; then
    tar -xzf "$DEV/deps.tar.gz" -C "$D"
    cpath=
    while read -r dir; do [ -d "$D/root$dir" ] && cpath=${cpath:+$cpath:}$D/root$dir; done < "$D/include-dirs"
    export CPATH=$cpath${CPATH:+:$CPATH}
    export LIBRARY_PATH=$D/lib${LIBRARY_PATH:+:$LIBRARY_PATH}
    # Our programs find them through their run path (DT_RPATH, which their libraries'
    # own dependencies also use), not LD_LIBRARY_PATH: the machine's tools (nvcc, python3)
    # keep their own.
    LINK_PACKED="-Wl,--disable-new-dtags -Wl,-rpath,$D/lib"
    if [ -d "$D/fonts" ]; then
        printf '<?xml version="1.0"?>\n<fontconfig><dir>%s</dir><cachedir>%s</cachedir></fontconfig>\n' \
            "$D/fonts" "$W/fontconfig-cache" > "$D/fonts.conf"
        export FONTCONFIG_FILE=$D/fonts.conf
    fi
else
    note "WARN  no $DEV/deps.tar.gz (run make device-check here first): the machine's own libraries only"
fi
# The toolkit: nvcc on the PATH or in the usual places.
NVCC_BIN=$(command -v nvcc || ls /usr/local/cuda/bin/nvcc /usr/local/cuda-*/bin/nvcc 2>/dev/null | head -1)
[ -n "$NVCC_BIN" ] && export PATH=$(dirname "$NVCC_BIN"):$PATH
CUDA_HOME=${NVCC_BIN:+$(dirname "$(dirname "$NVCC_BIN")")}
# Link names of cudart and cuBLAS where the toolkit has only versioned files.
for l in cudart cublasLt cublas; do
    [ -n "$CUDA_HOME" ] && [ ! -e "$CUDA_HOME/lib64/lib$l.so" ] || continue
    f=$(ls "$CUDA_HOME"/lib64/lib$l.so.* "$CUDA_HOME"/lib/lib$l.so.* 2>/dev/null | head -1)
    [ -n "$f" ] && mkdir -p "$D/lib" && ln -sf "$f" "$D/lib/lib$l.so"
done
# cuDNN where the system or pip put it, else the packed headers (the library may still
# be on the loader's path); bench_gpu says when it has no cuDNN column.
CUDNN_DIR=
for c in "$CUDA_HOME" /usr /usr/local/cudnn $(python3 -c 'import nvidia.cudnn as m; print(m.__path__[0])' 2>/dev/null); do
    [ -n "$c" ] && [ -f "$c/include/cudnn.h" ] && CUDNN_DIR=$c && break
done
[ -z "$CUDNN_DIR" ] && [ -d "$D/cudnn" ] && CUDNN_DIR=$D/cudnn
export CUDNN_DIR
# The tokenizer and photos: beside the test runner, and where suite data looks.
if [ -d "$DEV/clip-tokenizer" ]; then mkdir -p build && rm -rf build/clip-tokenizer && cp -r "$DEV/clip-tokenizer" build/; fi
[ -d "$DEV/shared/data" ] && export SDFT_SHARED=$PWD/$DEV/shared
MAKEVARS=(CUDA_ARCHS="${CUDA_ARCHS:-90}" PYTHON=python3 EXTRA_LDFLAGS="$LINK_PACKED")

if stage env 5; then
    {
        date -u; uname -a; echo "cores: $(nproc)"; free -g | head -2
        nvidia-smi; echo "nvcc: ${NVCC_BIN:-NONE}"; nvcc --version 2>&1 | tail -2
        echo "CUDA_HOME=$CUDA_HOME CUDNN_DIR=$CUDNN_DIR"; echo "CPATH=${CPATH:-}"
        echo "LIBRARY_PATH=${LIBRARY_PATH:-}"; git log -1 --oneline 2>/dev/null; ${CC:-cc} --version | head -1
        echo "cJSON's header from: $(echo '#include <cjson/cJSON.h>' | cc -H -E -x c - 2>&1 >/dev/null | head -1)"
    } >> "$OUT/env.log" 2>&1
    note "ok    env: $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null | head -1)" \
         "nvcc $(nvcc --version 2>/dev/null | grep -o 'release [0-9.]*')"
fi

BUILT=0
TARGETS=(all build/bench_gpu)
[ "$GPU" = cuda-emu ] && { MAKEVARS+=(NVCC=); TARGETS=(all); }
if stage build 60; then
    [ -n "$NVCC_BIN" ] || [ "$GPU" = cuda-emu ] || note "FAIL  build: no nvcc on this machine"
    if step "$OUT/build.log" 300 "build (make -j$JOBS, sm_${CUDA_ARCHS:-90})" make -j"$JOBS" "${MAKEVARS[@]}" "${TARGETS[@]}"; then
        BUILT=1
    elif step "$OUT/build.log" 240 "build again, nvcc warnings not errors" make -j"$JOBS" "${MAKEVARS[@]}" \
        NVCC_WERROR= "${TARGETS[@]}"; then
        BUILT=1
    fi
    grep -E '^- |warning|MISSING' "$OUT/build.log" | head -20 >> "$SUMMARY"
    ldd build/run_tests 2>/dev/null | grep 'not found' | sed 's/^/      unresolved: /' >> "$SUMMARY"
elif [ -x build/run_tests ]; then BUILT=1
fi

# test-gpu first on the suites that run our kernels against the CPU, every launch checked
# (SDFT_CUDA_SYNC=1: a fault names its kernel); the emulator's comparisons are left to CI.
GPU_SUITES=${GPU_SUITES:-rng tensor ops models train}
if [ $BUILT = 1 ] && stage test 60; then
    if [ "$GPU" = cuda-emu ]; then
        step "$OUT/test-gpu.log" 400 "run_tests $GPU_SUITES (cuda-emu dry run)" env SDFT_CUDA_SYNC=1 \
            build/run_tests $GPU_SUITES
    else
        step "$OUT/test-gpu.log" 400 "make test-gpu TESTS='$GPU_SUITES'" env SDFT_CUDA_SYNC=1 SDFT_EMU_OPS=none \
            make "${MAKEVARS[@]}" test-gpu TESTS="$GPU_SUITES"
    fi
    grep -E '^[0-9]+ passed' "$OUT/test-gpu.log" | tail -1 >> "$SUMMARY"
    grep -E '^(FAIL|SKIPPED)' "$OUT/test-gpu.log" | head -20 >> "$SUMMARY"
fi

if [ $BUILT = 1 ] && [ "$GPU" = cuda ] && stage bench 45; then
    step "$OUT/bench-gpu.log" 200 "make bench-gpu (bf16)" make "${MAKEVARS[@]}" bench-gpu BENCH_GPU_ARGS="--dtype bf16"
    grep -E '^cuDNN|conv3x3_320_64x64 |attn_self_4096_8x40 |group_norm_silu_64x64x320 |linear_geglu' \
        "$OUT/bench-gpu.log" | head -12 >> "$SUMMARY"
fi

# The programs on the device: a render and a short training run of the tiny model.
TINY=tests/fixtures/models/tiny-sd
[ "$GPU" = cuda-emu ] && stage cli 0 && note "SKIP  cli: the programs take --device cpu or cuda, not cuda-emu"
if [ $BUILT = 1 ] && [ "$GPU" = cuda ] && stage cli 40; then
    for dt in f32 bf16; do
        step "$OUT/cli.log" 60 "sdft-sample tiny on $GPU ($dt)" build/sdft-sample --model $TINY --prompt "a red ball" \
            --steps 4 --width 64 --height 64 --seed 3 --device "$GPU" --dtype $dt --out "$W/tiny-$dt.png" --no-hash --quiet
    done
    mkdir -p build/demo/instance && build/sdft-demo-images build/demo/instance >> "$OUT/cli.log" 2>&1
    step "$OUT/cli.log" 120 "sdft-train tiny, 5 steps on $GPU (bf16)" env SDFT_CUDA_SYNC=1 build/sdft-train \
        --config configs/demo.yaml --quiet model.device="$GPU" model.dtype=bf16 train.steps=5 \
        prior.num_class_images=2 prior.class_dir="$W/tiny-class" validation.steps=2 output.dir="$W/tiny-train"
fi

# SD1.5 with random weights, written there from the prepared manifest: a 512x512 render
# (20 steps dpmpp_2m_karras, cfg 7.5, bf16), whose it/s comes from the wall times of a
# 1-step and a 20-step render (so loading, the text encoder and the VAE drop out), then
# training steps at 512 (batch 1 + 1 prior image, rank 4, bf16), with the GPU memory in
# use at its peak in each (nvidia-smi, polled). The dry run renders and trains at 64x64
# on the CPU: the programs take cpu or cuda, not cuda-emu.
PY=${DEVICE_PYTHON:-python3}
SD15=$W/sd15-random
# gpu_peak_start FILE ... gpu_peak_stop FILE: sets PEAK to the most memory in use on the
# GPU meanwhile
gpu_peak_start() {
    SMI_PID=
    [ "$GPU" = cuda ] && command -v nvidia-smi > /dev/null || return 0
    nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 200 > "$1" 2>/dev/null &
    SMI_PID=$!
}
gpu_peak_stop() {
    PEAK="not measured (no nvidia-smi)"
    [ -n "$SMI_PID" ] || return 0
    kill "$SMI_PID" 2>/dev/null; wait "$SMI_PID" 2>/dev/null
    PEAK=$(sort -n "$1" | tail -1)
    PEAK=${PEAK:+$PEAK MiB}; PEAK=${PEAK:-not measured (nvidia-smi printed nothing)}
}
sd15() {
    local log=$OUT/sd15.log dev=cuda dtype=bf16 size=512 why
    [ "$GPU" = cuda-emu ] && { dev=cpu; dtype=f32; size=64; }
    if [ ! -f "$DEV/sd15_manifest.json" ]; then
        note "SKIP  sd15: no $DEV/sd15_manifest.json (prepare's Python lacked torch, diffusers or transformers)"
        return
    fi
    if ! why=$("$PY" -c 'import numpy, safetensors' 2>&1); then
        note "SKIP  sd15: $PY cannot write the model: $(echo "$why" | tail -1)"
        return
    fi
    if [ ! -f "$SD15/model_index.json" ]; then
        rm -rf "$SD15"
        step "$log" 150 "sd15: random-weight model written (fp16 files)" "$PY" tools/write_random_sd15.py \
            "$DEV/sd15_manifest.json" "$SD15" $( [ -d build/clip-tokenizer ] && echo --tokenizer build/clip-tokenizer ) ||
            return
    fi
    # The render with 1 step and with 20: the difference is 19 sampler steps.
    local walls=() n t0
    gpu_peak_start "$W/sd15-render-mem"
    for n in 1 20; do
        [ "$(left)" -gt 30 ] || break
        t0=$(date +%s.%N)
        step "$log" 120 "sd15: render ${size}x$size --steps $n (dpmpp_2m_karras, cfg 7.5, $dev, $dtype)" \
            build/sdft-sample --model "$SD15" --prompt "a photo of a dog on the beach" --steps $n --cfg 7.5 \
            --sampler dpmpp_2m_karras --width $size --height $size --seed 1 --device $dev --dtype $dtype \
            --out "$W/sd15-render-$n.png" --no-hash --quiet || break
        walls+=("$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.2f", b - a}')")
    done
    gpu_peak_stop "$W/sd15-render-mem"
    if [ ${#walls[@]} = 2 ]; then
        cp "$W/sd15-render-20.png" "$OUT/"
        note "      sd15 render ${size}x$size: $(awk -v a="${walls[0]}" -v b="${walls[1]}" 'BEGIN {
            if (b > a) printf "%.2f it/s", 19 / (b - a); else printf "no rate"}') (CFG steps; ${walls[0]} s" \
            "for 1 step, ${walls[1]} s for 20), peak GPU memory $PEAK"
    fi

    [ "$(left)" -gt 50 ] || { note "SKIP  sd15 training: $(left) s of the budget left, needs ~50 s"; return; }
    [ -f build/demo/instance/00.png ] ||
        { mkdir -p build/demo/instance && build/sdft-demo-images build/demo/instance >> "$log" 2>&1; }
    rm -rf "$W/sd15-train"
    cat > "$W/sd15-train.yaml" <<EOF
model: {path: $SD15, tokenizer: build/clip-tokenizer, device: $dev, dtype: $dtype}
subject: {token: sks, class: ball}
data: {instance_dir: build/demo/instance, resolution: $size}
lora: {rank: 4, alpha: 4}
train: {steps: 4, batch_size: 1, learning_rate: 1.0e-4, seed: 42}
prior: {enabled: true, num_class_images: 1, class_dir: $W/sd15-class}
validation: {prompts: ["a photo of {token} {class}"], steps: 2, width: $size, height: $size}
output: {dir: $W/sd15-train}
EOF
    gpu_peak_start "$W/sd15-train-mem"
    step "$log" 180 "sd15: train 4 steps at $size (batch 1 + 1 prior image, rank 4, $dev, $dtype)" \
        build/sdft-train --config "$W/sd15-train.yaml" --quiet
    gpu_peak_stop "$W/sd15-train-mem"
    # metrics.jsonl's "seconds" is each step's own time; the first one warms up.
    if [ -f "$W/sd15-train/metrics.jsonl" ]; then
        cat "$W/sd15-train/metrics.jsonl" >> "$log"
        note "      sd15 train at $size: $(grep -o '"seconds": [0-9.]*' "$W/sd15-train/metrics.jsonl" | awk '
            {s[NR] = $2} END {if (NR < 2) {print "under two steps"; exit}
            for (i = 2; i <= NR; i++) sum += s[i]
            printf "%.3f s/step after the first (first %.2f s, %d steps)", sum / (NR - 1), s[1], NR}')," \
            "peak GPU memory $PEAK"
    fi
}
if [ $BUILT = 1 ] && stage sd15 120; then sd15; fi

# compute-sanitizer on the tiny model's kernels: memcheck over training steps (forward
# and backward), racecheck and synccheck over a render.
CS=$(command -v compute-sanitizer || ls "$CUDA_HOME"/bin/compute-sanitizer 2>/dev/null | head -1)
if [ $BUILT = 1 ] && [ "$GPU" = cuda ] && [ -n "$CS" ] && stage sanitizer 60; then
    RENDER=(build/sdft-sample --model $TINY --prompt "a red ball" --steps 1 --width 64 --height 64 --device cuda
            --dtype bf16 --out "$W/tiny-san.png" --no-hash --quiet)
    step "$OUT/sanitizer.log" 150 "memcheck: tiny train 2 steps (bf16)" "$CS" --tool memcheck --leak-check no \
        --print-limit 20 --error-exitcode 9 build/sdft-train --config configs/demo.yaml --quiet model.device=cuda \
        model.dtype=bf16 train.steps=2 prior.num_class_images=2 prior.class_dir="$W/tiny-class" \
        validation.steps=1 output.dir="$W/tiny-san"
    for tool in racecheck synccheck; do
        [ "$(left)" -gt 30 ] && step "$OUT/sanitizer.log" 120 "$tool: tiny render (bf16)" "$CS" --tool $tool \
            --print-limit 20 --error-exitcode 9 "${RENDER[@]}"
    done
    grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$OUT/sanitizer.log" | sort | uniq -c >> "$SUMMARY"
fi

# While the budget lasts: every suite (the emulator's comparisons too).
if [ $BUILT = 1 ] && [ "$GPU" = cuda ] && stage all-tests 60; then
    step "$OUT/test-gpu-all.log" $(($(left) - 10)) "make test-gpu (every suite)" make "${MAKEVARS[@]}" test-gpu
    grep -E '^[0-9]+ passed' "$OUT/test-gpu-all.log" | tail -1 >> "$SUMMARY"
    grep -E '^FAIL' "$OUT/test-gpu-all.log" | head -20 >> "$SUMMARY"
fi

note "total $(($(date +%s) - T0)) s; logs in $OUT"
echo "================ summary"
cat "$SUMMARY"
