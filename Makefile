# sdft: Stable Diffusion fine-tuning in C. `make` builds the library, the CLIs and
# the test runner; `make test` runs the tests. Run `make help` for every target.

CC      ?= cc
BUILD   ?= build
PYTHON  ?= python3
OPT     ?= -O2
CFLAGS  := -std=c11 -D_GNU_SOURCE -g $(OPT) -Wall -Wextra -Wno-unused-parameter \
           -Werror=implicit-function-declaration -fopenmp -I. $(EXTRA_CFLAGS)
LDLIBS  := -lopenblas -lcjson -lm -fopenmp

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
ifeq ($(MAKECMDGOALS),)
SHOW_DETECTED := 1
endif
ifneq ($(filter all test bench,$(MAKECMDGOALS)),)
SHOW_DETECTED := 1
endif
ifeq ($(SHOW_DETECTED),1)
$(info sdft build: cc=$(CC) build=$(BUILD)$(if $(filter 1,$(SANITIZE)), sanitizers=address+undefined))
$(info - OpenBLAS: $(if $(HAVE_BLAS),found,MISSING (run: make deps)))
$(info - cJSON:    $(if $(HAVE_CJSON),found,MISSING (run: make deps)))
ifeq ($(NVCC),)
$(info - nvcc:     not found, CPU-only build)
else
$(info - nvcc:     $(NVCC); CUDA sources in tree: $(words $(CUDA_SRCS)))
endif
endif

# OpenMP threads that spin after a parallel loop take the cores from OpenBLAS's own
# threads, which run the matrix products right after (up to 50x slower on 2 cores).
# OpenMP reads this when a program starts, so it is set for everything make runs.
export OMP_WAIT_POLICY ?= passive

# --- sources ------------------------------------------------------------------------------
LIB_SRCS   := $(wildcard core/*.c kernels/*.c kernels/ops/*.c kernels/cpu/*.c)
TEST_SRCS  := $(wildcard tests/*.c tests/ops/*.c)
LIB_OBJS   := $(LIB_SRCS:%.c=$(BUILD)/%.o)
TEST_OBJS  := $(TEST_SRCS:%.c=$(BUILD)/%.o)
LIB        := $(BUILD)/libsdft.a
CLIS       := $(BUILD)/safetensors-info

.PHONY: all test test-asan fuzz bench golden deps clean help
all: $(LIB) $(CLIS) $(BUILD)/run_tests

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(LIB): $(LIB_OBJS)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/safetensors-info: $(BUILD)/tools/safetensors_info.o $(LIB)
	$(CC) $^ -o $@ $(LDLIBS)

$(BUILD)/run_tests: $(TEST_OBJS) $(LIB)
	$(CC) $^ -o $@ $(LDLIBS)

# --- tests ----------------------------------------------------------------------------------
# The interop tests run the Python safetensors package from a venv of their own, so
# a fresh Debian machine (where pip may not install into the system Python) works.
TEST_VENV := .venv-test
$(TEST_VENV)/ready: tools/requirements-test.txt
	$(PYTHON) -m venv $(TEST_VENV)
	$(TEST_VENV)/bin/pip install -q -r tools/requirements-test.txt
	touch $@

test: $(BUILD)/run_tests $(TEST_VENV)/ready
	PYTHON=$(TEST_VENV)/bin/python $(BUILD)/run_tests $(TESTS)

test-asan:
	$(MAKE) BUILD=build-asan SANITIZE=1 OPT=-O1 test

FUZZ_SECONDS ?= 60
FUZZ_CC      ?= clang
fuzz:
	@mkdir -p build-fuzz fuzz/corpus-run
	$(FUZZ_CC) -std=c11 -D_GNU_SOURCE -g -O1 -I. -fsanitize=fuzzer,address,undefined \
	  fuzz/fuzz_safetensors.c core/safetensors.c core/check.c core/rng.c kernels/tensor.c \
	  kernels/autograd.c kernels/backend.c $(wildcard kernels/cpu/*.c) \
	  -o build-fuzz/fuzz_safetensors -fopenmp -lopenblas -lcjson -lm
	build-fuzz/fuzz_safetensors -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
	  fuzz/corpus-run fuzz/corpus

# --- benchmarks and fixtures ------------------------------------------------------------------
# Debian's python3 has python3-torch for the reference column; pyenv's python3 does not.
BENCH_PYTHON ?= /usr/bin/python3
bench: $(BUILD)/bench_ops
	$(BENCH_PYTHON) bench/bench_ops.py --ours $(BUILD)/bench_ops $(BENCH_ARGS)

$(BUILD)/bench_ops: $(BUILD)/bench/bench_ops.o $(LIB)
	$(CC) $^ -o $@ $(LDLIBS)

# Regenerates tests/fixtures from PyTorch (tools/golden/README.md says how to set it up).
GOLDEN_PYTHON ?= $(PYTHON)
golden: $(BUILD)/run_tests
	$(BUILD)/run_tests --list-op-cases > $(BUILD)/op_cases.json
	$(GOLDEN_PYTHON) tools/golden/ops.py $(BUILD)/op_cases.json tests/fixtures/ops.safetensors
	$(GOLDEN_PYTHON) tools/golden/safetensors_files.py tests/fixtures/safetensors

# Debian packages the build and the tests need (run as root on a fresh machine).
deps:
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q build-essential libopenblas-dev \
	  libcjson-dev clang libclang-rt-dev python3 python3-pip python3-venv

clean:
	rm -rf build build-asan build-fuzz

help:
	@echo "make            build library, CLIs and test runner (CPU-only without nvcc)"
	@echo "make test       run the test suite (TESTS=prefix to filter)"
	@echo "make test-asan  the suite under AddressSanitizer + UBSan"
	@echo "make fuzz       fuzz the safetensors parser for FUZZ_SECONDS (60)"
	@echo "make bench      CPU op timings at SD1.5 shapes against PyTorch"
	@echo "make golden     regenerate tests/fixtures from PyTorch"
	@echo "make deps       install the Debian packages"

-include $(LIB_OBJS:.o=.d) $(TEST_OBJS:.o=.d) $(BUILD)/bench/bench_ops.d $(BUILD)/tools/safetensors_info.d
