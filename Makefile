# sdft: Stable Diffusion fine-tuning in C. `make` builds the library, the CLIs and
# the test runner; `make test` runs the tests. Run `make help` for every target.

CC      ?= cc
CXX     ?= g++
BUILD   ?= build
PYTHON  ?= python3
OPT     ?= -O2
comma   := ,
# cairo (the loss plot, captioned grids; fonts through fontconfig) keeps its header in a
# folder of its own.
CAIRO_CFLAGS := $(or $(shell pkg-config --cflags cairo 2>/dev/null),-I/usr/include/cairo)
CFLAGS  := -std=c11 -D_GNU_SOURCE -g $(OPT) -Wall -Wextra -Wno-unused-parameter \
           -Werror=implicit-function-declaration -fopenmp -I. $(CAIRO_CFLAGS) $(EXTRA_CFLAGS)
# Debian's OpenBLAS built for OpenMP (libopenblas0-openmp, which `make deps` installs)
# runs its matrix products on our OpenMP threads; the default pthreads build keeps a
# pool of its own beside them, whose waiting threads took 13% of a training step on 2
# cores. Both have the soname libopenblas.so.0: linking as usual and putting the
# OpenMP build's folder in the run path makes the programs load that one.
OPENBLAS_OPENMP_DIR := $(patsubst %/,%,$(dir $(firstword $(wildcard /usr/lib/*/openblas-openmp/libopenblas.so.0))))
# core/thread_policy.c makes OpenMP's idle threads wait passively; nothing calls it, so
# every program names it to the linker, which would otherwise leave it in the archive.
LDLIBS  := -Wl,--require-defined=thread_policy_preinit \
           -lopenblas $(if $(OPENBLAS_OPENMP_DIR),-Wl$(comma)-rpath$(comma)$(OPENBLAS_OPENMP_DIR)) \
           -lcjson -lpng -lz -ljpeg -lyaml -lcairo -lfontconfig -lm -fopenmp $(EXTRA_LDFLAGS)

ifeq ($(SANITIZE),1)
CFLAGS  += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
LDLIBS  += -fsanitize=address,undefined
endif

# --- what this machine has ------------------------------------------------------------
NVCC      := $(shell command -v nvcc 2>/dev/null)
CUDA_SRCS := $(wildcard kernels/cuda/*.cu)
# A header and a library are found when a one-line program that includes the one
# (-include, so no '#' has to survive make's quoting) links against the other.
have = $(shell echo 'int main(void){return 0;}' | \
          $(CC) -include $(1) -x c - -o /dev/null $(2) 2>/dev/null && echo yes)
HAVE_BLAS  := $(call have,cblas.h,-lopenblas)
HAVE_CJSON := $(call have,cjson/cJSON.h,-lcjson)
HAVE_PNG   := $(call have,png.h,-lpng)
HAVE_JPEG  := $(call have,stdio.h -include jpeglib.h,-ljpeg)
HAVE_YAML  := $(call have,yaml.h,-lyaml)
HAVE_CAIRO := $(call have,cairo.h,$(CAIRO_CFLAGS) -lcairo)
ifeq ($(MAKECMDGOALS),)
SHOW_DETECTED := 1
endif
ifneq ($(filter all test bench,$(MAKECMDGOALS)),)
SHOW_DETECTED := 1
endif
ifeq ($(SHOW_DETECTED),1)
$(info sdft build: cc=$(CC) build=$(BUILD)$(if $(filter 1,$(SANITIZE)), sanitizers=address+undefined))
$(info - OpenBLAS: $(if $(HAVE_BLAS),found$(if $(OPENBLAS_OPENMP_DIR),; OpenMP build in $(OPENBLAS_OPENMP_DIR),; pthreads build (make deps adds the OpenMP one)),MISSING (run: make deps)))
$(info - cJSON:    $(if $(HAVE_CJSON),found,MISSING (run: make deps)))
$(info - libpng:   $(if $(HAVE_PNG),found,MISSING (run: make deps)))
$(info - libjpeg:  $(if $(HAVE_JPEG),found,MISSING (run: make deps)))
$(info - libyaml:  $(if $(HAVE_YAML),found,MISSING (run: make deps)))
$(info - cairo:    $(if $(HAVE_CAIRO),found,MISSING (run: make deps)))
ifeq ($(NVCC),)
$(info - nvcc:     not found, CPU-only build)
else
$(info - nvcc:     $(NVCC); CUDA sources in tree: $(words $(CUDA_SRCS)))
endif
endif

.SECONDEXPANSION:

# --- sources ------------------------------------------------------------------------------
LIB_SRCS   := $(wildcard core/*.c kernels/*.c kernels/ops/*.c kernels/cpu/*.c infer/*.c train/*.c data/*.c)
TEST_SRCS  := $(wildcard tests/*.c tests/ops/*.c)
LIB_OBJS   := $(LIB_SRCS:%.c=$(BUILD)/%.o)
TEST_OBJS  := $(TEST_SRCS:%.c=$(BUILD)/%.o)
LIB        := $(BUILD)/libsdft.a
CLIS       := $(BUILD)/safetensors-info $(BUILD)/sdft-sample $(BUILD)/sdft-train $(BUILD)/sdft-demo-images \
              $(BUILD)/sdft-eval
# OpenAI's CLIP BPE file (MIT), from which the build derives the tokenizer folder.
CLIP_BPE   := ../shared/data/clip/bpe_simple_vocab_16e6.txt.gz

# The CUDA kernels compile twice. With g++ against kernels/emu (always): the
# cuda-emu backend, so `make test` runs every kernel on the CPU. With nvcc (when
# present) for sm_80 and sm_90, warnings as errors: the cuda backend.
EMU_OBJS   := $(CUDA_SRCS:%.cu=$(BUILD)/emu/%.o) \
              $(patsubst %.cpp,$(BUILD)/%.o,$(wildcard kernels/emu/*.cpp))
EMU_FLAGS  := -std=c++20 -DSDFT_EMU -g $(OPT) -Wall -Wextra -Wno-unused-parameter \
              -Wno-missing-field-initializers -Wno-unknown-pragmas -fopenmp -I. $(EXTRA_CFLAGS)
ifeq ($(SANITIZE),1)
EMU_FLAGS  += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
endif
ifneq ($(CUDA_SRCS),)
CFLAGS     += -DSDFT_HAVE_EMU
LIB_OBJS   += $(EMU_OBJS)
LDLIBS     += -lstdc++
endif

CUDA_HOME  ?= $(patsubst %/bin/nvcc,%,$(NVCC))
CUDA_ARCHS ?= 80 90
# Warnings are errors; NVCC_WERROR= turns that off (another host compiler may warn anew).
NVCC_WERROR ?= -Werror all-warnings
NVCC_FLAGS := -std=c++20 -O2 -g -I. $(NVCC_WERROR) \
              $(foreach a,$(CUDA_ARCHS),-gencode arch=compute_$(a),code=sm_$(a)) \
              -Xcompiler -Wall,-Wno-unused-parameter,-Wno-missing-field-initializers
ifneq ($(NVCC),)
ifneq ($(CUDA_SRCS),)
CFLAGS     += -DSDFT_HAVE_CUDA -I$(CUDA_HOME)/include
LIB_OBJS   += $(CUDA_SRCS:%.cu=$(BUILD)/cuda/%.o)
LDLIBS     += -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 -lcudart -lcublasLt
BENCH_GPU_LIBS := -lcublas  # the reference GEMMs of bench_gpu
# cuDNN for bench_gpu's reference column (loaded at run time; the header gives its
# types): the toolkit's, else pip's (nvidia-cudnn-cu*). CUDNN_DIR=<folder> names another
# (with include/ and lib/); without one the column is skipped with a message.
CUDNN_DIR ?= $(or $(if $(wildcard $(CUDA_HOME)/include/cudnn.h),$(CUDA_HOME)),$(shell $(PYTHON) -c \
               'import nvidia.cudnn as m; print(m.__path__[0])' 2>/dev/null))
$(BUILD)/bench/bench_gpu.o: CFLAGS += $(if $(CUDNN_DIR),-I$(CUDNN_DIR)/include '-DCUDNN_LIB_DIRS="$(CUDNN_DIR)/lib64:$(CUDNN_DIR)/lib"')
endif
endif

.PHONY: all train sample test test-full test-gpu test-asan kernel-coverage fuzz bench bench-models bench-train bench-gpu golden deps clean help device-check print-build-flags
all: $(LIB) $(CLIS) $(BUILD)/run_tests $(if $(wildcard $(CLIP_BPE)),$(BUILD)/clip-tokenizer/vocab.json)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/%.o: %.cpp
	@mkdir -p $(dir $@)
	$(CXX) $(EMU_FLAGS) -MMD -MP -c $< -o $@

$(BUILD)/emu/%.o: %.cu
	@mkdir -p $(dir $@)
	$(CXX) $(EMU_FLAGS) -MMD -MP -x c++ -c $< -o $@

$(BUILD)/cuda/%.o: %.cu
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCC_FLAGS) -MMD -MP -c $< -o $@

$(LIB): $(LIB_OBJS)
	@tools/check_layers.sh
ifneq ($(NVCC),)
	@tools/check_cuda_symbols.sh $(filter $(BUILD)/emu/%,$^) -- $(filter $(BUILD)/cuda/%,$^)
endif
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/safetensors-info: $(BUILD)/tools/safetensors_info.o $(LIB)
	$(CC) $^ -o $@ $(LDLIBS)

$(BUILD)/sdft-sample: $(BUILD)/tools/sample.o $(LIB) $(BUILD)/sd15_configs/scheduler.json
	$(CC) $(filter %.o %.a,$^) -o $@ $(LDLIBS)

$(BUILD)/sdft-train: $(BUILD)/tools/train.o $(LIB) $(BUILD)/sd15_configs/scheduler.json
	$(CC) $(filter %.o %.a,$^) -o $@ $(LDLIBS)

$(BUILD)/sdft-demo-images: $(BUILD)/tools/demo_images.o $(LIB)
	$(CC) $^ -o $@ $(LDLIBS)

$(BUILD)/sdft-eval: $(BUILD)/tools/eval_lora.o $(LIB)
	$(CC) $^ -o $@ $(LDLIBS)

# Files the programs read from beside themselves: SD1.5's configs (single files carry
# none) and, when the shared data is there, the CLIP tokenizer derived from it.
$(BUILD)/sd15_configs/scheduler.json: $(wildcard tools/sd15_configs/*.json)
	@mkdir -p $(dir $@)
	cp tools/sd15_configs/*.json $(dir $@)

# Planted bugs: copies of real kernels with one mutation each (tests/planted/*.sed),
# compiled for the emulator under their own names; tests/test_planted.c shows the
# comparison with the CPU catches each. A sed script that no longer changes its
# kernel fails the build, so the test never runs an unmutated copy.
PLANTED     := $(patsubst tests/planted/%.sed,$(BUILD)/planted/%.o,$(wildcard tests/planted/*.sed))
.SECONDARY: $(PLANTED:.o=.cu)
$(BUILD)/planted/%.cu: tests/planted/%.sed kernels/cuda/$$(firstword $$(subst _, ,$$*)).cu
	@mkdir -p $(dir $@)
	sed -f $< kernels/cuda/$(firstword $(subst _, ,$*)).cu > $@
	@! cmp -s $@ kernels/cuda/$(firstword $(subst _, ,$*)).cu || \
	  { echo "$<: the mutation no longer applies to its kernel"; rm -f $@; exit 1; }
$(BUILD)/planted/%.o: $(BUILD)/planted/%.cu
	$(CXX) $(EMU_FLAGS) '-DCUDA_FN(name)=planted_$*_##name' -MMD -MP -x c++ -c $< -o $@

$(BUILD)/run_tests: $(TEST_OBJS) $(PLANTED) $(LIB)
	$(CC) $^ -o $@ $(LDLIBS)

# --- training and rendering ----------------------------------------------------------------
# make train: DreamBooth-LoRA training from a run config (configs/demo.yaml: the tiny
# model on drawn example photos, a few minutes on a CPU); make sample: the config's
# validation prompts, with the run's adapter when it exists, into <output.dir>/samples/.
# ARGS takes section.key=value overrides.
CONFIG ?= configs/demo.yaml
DEMO_IMAGES := $(BUILD)/demo/instance/00.png
$(DEMO_IMAGES): $(BUILD)/sdft-demo-images
	@mkdir -p $(dir $@)
	$(BUILD)/sdft-demo-images $(dir $@)
train: $(BUILD)/sdft-train $(DEMO_IMAGES) $(if $(wildcard $(CLIP_BPE)),$(BUILD)/clip-tokenizer/vocab.json)
	$(BUILD)/sdft-train --config $(CONFIG) $(ARGS)
sample: $(BUILD)/sdft-sample $(if $(wildcard $(CLIP_BPE)),$(BUILD)/clip-tokenizer/vocab.json)
	$(BUILD)/sdft-sample --config $(CONFIG) $(ARGS)

# --- tests ----------------------------------------------------------------------------------
# The interop tests run the Python safetensors package from a venv of their own, so
# a fresh Debian machine (where pip may not install into the system Python) works.
TEST_VENV := .venv-test
$(TEST_VENV)/ready: tools/requirements-test.txt
	$(PYTHON) -m venv $(TEST_VENV)
	$(TEST_VENV)/bin/pip install -q -r tools/requirements-test.txt
	touch $@

# The CLIP tokenizer folder (vocab.json, merges.txt, configs) suite tokenizer reads,
# derived from OpenAI's BPE file, which is MIT licensed but neither it nor anything
# derived from it is committed.
$(BUILD)/clip-tokenizer/vocab.json: tools/clip_vocab.py
	$(PYTHON) tools/clip_vocab.py $(CLIP_BPE) $(BUILD)/clip-tokenizer

test: $(BUILD)/run_tests $(CLIS) $(TEST_VENV)/ready $(BUILD)/clip-tokenizer/vocab.json
	PYTHON=$(TEST_VENV)/bin/python $(BUILD)/run_tests $(TESTS)

# On a machine with a GPU: every suite with the real cuda backend beside cuda-emu, each
# compared against the CPU (the op harness, the tiny model's render and training steps);
# SDFT_REQUIRE_GPU=1 makes a GPU that does not answer a failure. Runs where there is no
# network and no ../shared: no pip step (the test venv's Python when it exists, else
# $(PYTHON); checks that need numpy and Pillow skip without them), and without the
# CLIP tokenizer the suites that read it are SKIPPED. make device-check packs what the
# lent GPU machine lacks (docs/kernels.md).
TEST_PYTHON = $(if $(wildcard $(TEST_VENV)/bin/python),$(TEST_VENV)/bin/python,$(PYTHON))
test-gpu: $(BUILD)/run_tests $(CLIS) $(if $(wildcard $(CLIP_BPE)),$(BUILD)/clip-tokenizer/vocab.json)
	@test -n "$(NVCC)" || { echo "test-gpu: nvcc not found, no cuda backend to test"; exit 1; }
	SDFT_REQUIRE_GPU=1 PYTHON=$(TEST_PYTHON) $(BUILD)/run_tests $(TESTS)

test-asan:
	$(MAKE) BUILD=build-asan SANITIZE=1 OPT=-O1 test

# Every __global__ kernel must run in the tests: a --coverage build of the emulated
# kernels runs the op harness, then gcov tells which kernels executed.
kernel-coverage:
	$(MAKE) NVCC= BUILD=build-cov OPT=-O0 EXTRA_CFLAGS=--coverage EXTRA_LDFLAGS=--coverage \
	  build-cov/run_tests
	find build-cov -name "*.gcda" -delete
	build-cov/run_tests rng tensor planted ops emu > build-cov/kernel-coverage.log
	$(PYTHON) tools/check_kernel_coverage.py build-cov/emu/kernels/cuda

FUZZ_SECONDS ?= 60
FUZZ_CC      ?= clang
# The parser alone, linked from core/ files only (tools/check_layers.sh keeps core/
# from including anything above it).
fuzz:
	@mkdir -p build-fuzz fuzz/corpus-run
	$(FUZZ_CC) -std=c11 -D_GNU_SOURCE -g -O1 -I. -fsanitize=fuzzer,address,undefined \
	  fuzz/fuzz_safetensors.c core/safetensors.c core/dtype.c core/check.c core/utf8.c core/files.c \
	  -o build-fuzz/fuzz_safetensors -lcjson -lm
	build-fuzz/fuzz_safetensors -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
	  fuzz/corpus-run fuzz/corpus

# --- benchmarks and fixtures ------------------------------------------------------------------
# Debian's python3 has python3-torch for the reference column; pyenv's python3 does not.
BENCH_PYTHON ?= /usr/bin/python3
bench: $(BUILD)/bench_ops
	$(BENCH_PYTHON) bench/bench_ops.py --ours $(BUILD)/bench_ops $(BENCH_ARGS)
	$(MAKE) --no-print-directory bench-models
	$(MAKE) --no-print-directory bench-train

$(BUILD)/bench_ops: $(BUILD)/bench/bench_ops.o $(LIB)
	$(CC) $^ -o $@ $(LDLIBS)

# The whole models at SD1.5's shapes beside diffusers (its Python: GOLDEN_PYTHON, the
# golden venv when there is one): the text encoder, one UNet step of classifier-free
# guidance at 512x512 and a VAE decode, on the random-weight SD1.5 of test-full below.
bench-models: $(BUILD)/bench_models $(BUILD)/sd15-random/model_index.json $(BUILD)/clip-tokenizer/vocab.json
	$(GOLDEN_PYTHON) bench/bench_models.py --ours $(BUILD)/bench_models \
	  --model $(BUILD)/sd15-random --tokenizer $(BUILD)/clip-tokenizer $(BENCH_MODELS_ARGS)

$(BUILD)/bench_models: $(BUILD)/bench/bench_models.o $(LIB)
	$(CC) $^ -o $@ $(LDLIBS)

# One DreamBooth-LoRA training step at 256x256 on the same random-weight SD1.5 (batch 1
# + 1 class image, rank 4, gradient checkpointing off and on): sdft-train beside the
# loop body of diffusers' train_dreambooth_lora.py, seconds per step and peak RSS.
bench-train: $(BUILD)/sdft-train $(BUILD)/sd15-random/model_index.json $(BUILD)/clip-tokenizer/vocab.json
	$(GOLDEN_PYTHON) bench/bench_train.py --ours $(BUILD)/sdft-train --model $(BUILD)/sd15-random \
	  --tokenizer $(BUILD)/clip-tokenizer $(BENCH_TRAIN_ARGS)

# Every CUDA kernel timed at SD1.5 shapes on the GPU, beside cuBLAS and (loaded at
# run time when libcudnn is installed) cuDNN.
bench-gpu: $(BUILD)/bench_gpu
	$(BUILD)/bench_gpu $(BENCH_GPU_ARGS)

$(BUILD)/bench_gpu: $(BUILD)/bench/bench_gpu.o $(LIB)
	$(CC) $^ -o $@ $(LDLIBS) $(BENCH_GPU_LIBS)

# The first minutes on a lent GPU (docs/kernels.md): this builds here and packs into
# .device/ what that machine lacks (the libraries our programs load, the headers the
# build includes, the CLIP tokenizer, the DreamBooth photos, cuDNN's headers); then one
# device call runs `bash tools/device_check.sh` there (build for sm_90, test-gpu,
# bench-gpu, the CLIs on cuda, compute-sanitizer; logs and a summary under $$OUT).
device-check: $(BUILD)/run_tests $(CLIS) $(if $(wildcard $(CLIP_BPE)),$(BUILD)/clip-tokenizer/vocab.json)
	BUILD=$(BUILD) tools/device_check.sh prepare

# What tools/device_check.sh prepare reads of this build: the C flags, then the link line.
print-build-flags:
	@echo '$(CFLAGS)'
	@echo '$(LDLIBS)'

# Regenerates tests/fixtures from PyTorch (tools/golden/README.md says how to set it up).
GOLDEN_PYTHON ?= $(if $(wildcard .venv-golden/bin/python),.venv-golden/bin/python,$(PYTHON))
# lora.py also loads the adapters our trainer writes for tests/fixtures/lora/trained.yaml.
TRAINED := $(BUILD)/lora-trained
# comfy_lora.py runs ComfyUI's comfy/lora.py and comfy/utils.py from here, at the commits
# pinned in the script (not a dependency of the project, never committed).
COMFYUI_DIR ?= .venv-golden/comfyui
golden: $(BUILD)/run_tests $(BUILD)/sdft-train $(BUILD)/sdft-demo-images $(BUILD)/clip-tokenizer/vocab.json
	$(BUILD)/run_tests --list-op-cases > $(BUILD)/op_cases.json
	$(GOLDEN_PYTHON) tools/golden/ops.py $(BUILD)/op_cases.json tests/fixtures/ops.safetensors
	$(GOLDEN_PYTHON) tools/golden/safetensors_files.py tests/fixtures/safetensors
	$(GOLDEN_PYTHON) tools/golden/models.py tests/fixtures/models
	rm -rf $(TRAINED) && mkdir -p $(TRAINED)/photos && $(BUILD)/sdft-demo-images $(TRAINED)/photos
	$(BUILD)/sdft-train --config tests/fixtures/lora/trained.yaml model.tokenizer=$(BUILD)/clip-tokenizer \
	  data.instance_dir=$(TRAINED)/photos output.dir=$(TRAINED)/out
	$(GOLDEN_PYTHON) tools/golden/lora.py tests/fixtures/models tests/fixtures/lora $(TRAINED)/out
	$(GOLDEN_PYTHON) tools/golden/comfy_lora.py $(COMFYUI_DIR) tests/fixtures/models tests/fixtures/lora
	$(GOLDEN_PYTHON) tools/golden/train.py tests/fixtures/models tests/fixtures/train
	$(GOLDEN_PYTHON) tools/golden/tokenizer.py $(BUILD)/clip-tokenizer tests/fixtures/tokenizer/clip_ids.json
	$(GOLDEN_PYTHON) tools/golden/data.py ../shared/data tests/fixtures/data
	$(GOLDEN_PYTHON) tools/golden/schedulers.py tests/fixtures/schedulers
	$(GOLDEN_PYTHON) tools/golden/pipeline.py tests/fixtures/models $(BUILD)/clip-tokenizer tests/fixtures/pipeline.safetensors

# Full size, not in CI: a random-weight checkpoint with SD1.5's real shapes (a
# diffusers folder and a single file, 4.3 GB each, made once), diffusers' passes over
# it, and ours compared within 1e-4. Needs the golden venv and about 10 GB of memory.
SD15_RANDOM := $(BUILD)/sd15-random
$(SD15_RANDOM)/model_index.json:
	$(GOLDEN_PYTHON) tools/make_random_sd15.py --out-dir $(SD15_RANDOM) \
	  --single-file $(SD15_RANDOM).safetensors
$(SD15_RANDOM)-reference.safetensors: $(SD15_RANDOM)/model_index.json
	$(GOLDEN_PYTHON) tools/golden/full_reference.py $(SD15_RANDOM) --out $@
test-full: $(BUILD)/run_tests $(SD15_RANDOM)-reference.safetensors
	SDFT_FULL_MODEL=$(SD15_RANDOM) SDFT_FULL_SINGLE_FILE=$(SD15_RANDOM).safetensors \
	  SDFT_FULL_REFERENCE=$(SD15_RANDOM)-reference.safetensors $(BUILD)/run_tests full

# Debian packages the build and the tests need (run as root on a fresh machine).
deps:
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q build-essential libopenblas-dev libopenblas0-openmp \
	  libcjson-dev libpng-dev libjpeg62-turbo-dev libyaml-dev libcairo2-dev fonts-dejavu-core clang libclang-rt-dev python3 python3-pip python3-venv

clean:
	rm -rf build build-asan build-fuzz build-cov

help:
	@echo "make            build library, CLIs and test runner (CPU-only without nvcc)"
	@echo "make train      DreamBooth-LoRA training (CONFIG=configs/demo.yaml, ARGS=key=value...)"
	@echo "make sample     render a config's prompts to PNG, with the trained adapter (same CONFIG)"
	@echo "make test       run the test suite (TESTS=prefix to filter)"
	@echo "make test-asan  the suite under AddressSanitizer + UBSan"
	@echo "make test-full  SD1.5-shaped random model against diffusers (not in CI; 4.3 GB x2)"
	@echo "make fuzz       fuzz the safetensors parser for FUZZ_SECONDS (60)"
	@echo "make bench      CPU op timings at SD1.5 shapes against PyTorch, then bench-models, bench-train"
	@echo "make bench-models  SD1.5 UNet step, VAE decode, text encoder against diffusers"
	@echo "make bench-train   one SD1.5 DreamBooth-LoRA training step against diffusers' script"
	@echo "make test-gpu   the suites with the cuda backend on a GPU too (SDFT_CUDA_SYNC=1: name a faulting kernel)"
	@echo "make bench-gpu  every CUDA kernel timed at SD1.5 shapes beside cuBLAS/cuDNN"
	@echo "make device-check  pack .device/ for a lent GPU machine (then: bash tools/device_check.sh there)"
	@echo "make golden     regenerate tests/fixtures from PyTorch"
	@echo "make deps       install the Debian packages"

-include $(LIB_OBJS:.o=.d) $(TEST_OBJS:.o=.d) $(PLANTED:.o=.d) $(BUILD)/bench/bench_ops.d $(BUILD)/bench/bench_models.d \
  $(BUILD)/tools/safetensors_info.d $(BUILD)/tools/sample.d $(BUILD)/tools/train.d \
  $(BUILD)/tools/demo_images.d $(BUILD)/tools/eval_lora.d
