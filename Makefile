# Entry points. `make demo` and `make test` work on a fresh Debian 12 machine: both install what
# is missing (scripts/install-deps.sh), configure, build, then run.
SHELL    := /bin/bash
BUILD    ?= build
PYTHON   ?= /usr/bin/python3
JOBS     ?= $(shell nproc)
CMAKE_FLAGS ?=
FUZZ_SECONDS ?= 60
VOCAB    := engine/vocab/rwkv_vocab_v20230424.txt
DEMO_MODEL := $(BUILD)/demo/rwkv7-demo.safetensors

.PHONY: all deps configure build test sanitize fuzz demo bench bench-serve bench-durable bench-http bench-dtypes bench-vision bench-scheduler gpu-bundle fixtures clean

all: build

deps:
	@scripts/install-deps.sh

configure: deps
	@if [ ! -f $(BUILD)/CMakeCache.txt ]; then \
	  cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Release -DRWKV_PYTHON=$(PYTHON) $(CMAKE_FLAGS); fi

build: configure
	cmake --build $(BUILD) -j $(JOBS)

# Every test, then a short fuzz pass: each libFuzzer target for FUZZ_SECONDS (60; 0 skips it).
test: build
	ctest --test-dir $(BUILD) --output-on-failure -j $(JOBS)
	@if [ "$(FUZZ_SECONDS)" != "0" ]; then $(MAKE) --no-print-directory fuzz FUZZ_SECONDS=$(FUZZ_SECONDS); fi

# Every test again under AddressSanitizer and UndefinedBehaviorSanitizer (the loaders parse
# untrusted files). CPU-only build in $(BUILD)-asan.
sanitize: deps
	@if [ ! -f $(BUILD)-asan/CMakeCache.txt ]; then \
	  cmake -S . -B $(BUILD)-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DRWKV_WITH_CUDA=OFF -DRWKV_BUILD_BENCH=OFF \
	    -DRWKV_PYTHON=$(PYTHON) -DCMAKE_CXX_FLAGS="-O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined" \
	    -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=address,undefined"; fi
	cmake --build $(BUILD)-asan -j $(JOBS)
	ctest --test-dir $(BUILD)-asan --output-on-failure -j $(JOBS)

# The libFuzzer targets of tests/fuzz (clang, ASan+UBSan; CPU-only build in $(BUILD)-fuzz), each
# run for FUZZ_SECONDS from the committed seed corpus; a crash fails. scripts/fuzz.sh runs them
# longer (an hour each by default) and keeps what they find.
fuzz: deps
	cmake -S . -B $(BUILD)-fuzz -G Ninja -DCMAKE_BUILD_TYPE=Debug -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
	  -DRWKV_WITH_CUDA=OFF -DRWKV_BUILD_BENCH=OFF -DRWKV_FUZZ=ON -DRWKV_FUZZ_SECONDS=$(FUZZ_SECONDS) -DRWKV_PYTHON=$(PYTHON) \
	  -DCMAKE_CXX_FLAGS="-O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined,fuzzer-no-link -fno-sanitize-recover=undefined" \
	  -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=address,undefined" >/dev/null
	cmake --build $(BUILD)-fuzz -j $(JOBS) --target fuzz_targets
	@ctest --test-dir $(BUILD)-fuzz -L fuzz --output-on-failure -V -j $(JOBS) >$(BUILD)-fuzz/fuzz-ctest.log 2>&1; rc=$$?; \
	  grep -E "fuzz: |tests passed|tests failed|ERROR: |SUMMARY: " $(BUILD)-fuzz/fuzz-ctest.log; exit $$rc

$(DEMO_MODEL): tests/reference/make_fixtures.py
	@mkdir -p $(dir $@)
	$(PYTHON) tests/reference/make_fixtures.py --demo $@

# The main job on the embedded default: rwkv-server on the CPU backend with a small RWKV-7 that
# the repo makes (random weights: the text is fluent-looking nonsense; the pipeline is real),
# a completion streamed through rwkv-client, a session turn, then a graceful stop.
demo: build $(DEMO_MODEL)
	@scripts/demo.sh $(BUILD) $(DEMO_MODEL) $(VOCAB)

bench: build
	$(BUILD)/bench/engine_bench --json $(BUILD)/bench/engine_bench.json

# Aggregate tokens/s through gRPC at 1/4/16/64 streams beside the engine-only figure (CPU, 0.1B shape).
bench-serve: build
	$(PYTHON) bench/serve_bench.py --build $(BUILD)

# Durable sessions: turn latency at --persist-interval 0 vs 5 s through gRPC, start-up with 10,000
# stored sessions, the state file round trip (CPU, 0.1B shape).
bench-durable: build
	$(PYTHON) bench/durable_bench.py --build $(BUILD)

# The OpenAI-compatible API: a multi-turn chat replay with and without the prefix-state cache, and
# HTTP against gRPC tokens/s at 1/16/64 streams (CPU, 0.1B shape).
bench-http: build
	$(PYTHON) bench/http_bench.py --build $(BUILD)

bench-dtypes: build
	$(PYTHON) bench/dtype_bench.py --build $(BUILD)

# VisualRWKV-7's image encoder on the CPU at its real sizes (random weights), seconds per stage.
bench-vision: build
	$(BUILD)/bench/vision_bench --json $(BUILD)/bench/vision_bench.json

# The scheduler's host time per decode step (batch 1 to 256) over a backend doing only the CUDA
# backend's host-side planning: what a GPU waits for each step without host/device overlap.
bench-scheduler: build
	$(BUILD)/bench/scheduler_bench --json $(BUILD)/bench/scheduler_bench.json

# The GPU-side binaries and the libraries a bare CUDA machine lacks, for scripts/gpu-check.sh.
gpu-bundle: build
	scripts/gpu-bundle.sh $(BUILD)

# Regenerates the committed test fixtures (needs python3-torch; not part of the build).
fixtures:
	$(PYTHON) tests/reference/make_fixtures.py tests/fixtures

clean:
	rm -rf $(BUILD) $(BUILD)-asan $(BUILD)-fuzz
