# weft — a thin wrapper over CMake and CTest; the real steps are in scripts/.
#
#   make bench      the lab, weft's main job: a Release build, then
#                   `weft bench --python` (the study's 18 cases in C and in
#                   Python, on 1 and N cores, at scale 1.0, 3 runs each);
#                   tables on stdout, JSON/Markdown/SVG in docs/results/.
#                   BENCH_ARGS="--quick" etc. to change the run.
#   make test       the whole CI job: install missing Debian packages, then
#                   gcc ASan+UBSan, clang ASan+UBSan, clang TSan (concurrency
#                   tests), valgrind memcheck + the install test (find_package
#                   and pkg-config consumer), the parser fuzzer; see
#                   scripts/test.sh. Build dirs: build/asan-gcc,
#                   build/asan-clang, build/tsan-clang, build/memcheck
#   make test-gcc | test-clang | test-tsan | test-memcheck | test-install | test-fuzz
#                   one stage of it
#   make build      Release build in build/release
#   make install PREFIX=/usr/local
#   make microbench the micro-benchmarks against named peers (bench/run.sh:
#                   dispatch, process, coro, async)
#   make deps       install every package any target needs
#   make clean      remove build/

JOBS   ?= 2
BUILD  ?= build
PREFIX ?= /usr/local
export JOBS BUILD
MAKEFLAGS += --no-print-directory

STAGES := gcc clang tsan memcheck install fuzz

.PHONY: all build test $(STAGES:%=test-%) install bench microbench deps clean

all: build

deps:
	@bash scripts/deps.sh all

build:
	@bash scripts/deps.sh build
	cmake -S . -B $(BUILD)/release -DCMAKE_BUILD_TYPE=Release
	cmake --build $(BUILD)/release -j$(JOBS)

test:
	@bash scripts/deps.sh test
	@bash scripts/test.sh

$(STAGES:%=test-%):
	@bash scripts/deps.sh test
	@bash scripts/test.sh $(@:test-%=%)

install: build
	cmake --install $(BUILD)/release --prefix $(PREFIX)

# The lab: `weft bench` starts its own server, runs every case as its own
# process and keeps the machine-readable results.
BENCH_ARGS ?= --python
bench:
	@bash scripts/deps.sh bench
	cmake -S . -B $(BUILD)/release -DCMAKE_BUILD_TYPE=Release -DWEFT_TESTS=OFF >/dev/null
	cmake --build $(BUILD)/release -j$(JOBS) --target weft_cli weft_study
	@mkdir -p docs/results
	@stamp=$$(date +%Y%m%d-%H%M%S); \
	$(BUILD)/release/weft bench $(BENCH_ARGS) --json docs/results/study-$$stamp.json \
	  --markdown docs/results/study-$$stamp.md --svg docs/results/study-$$stamp.svg && \
	echo "results: docs/results/study-$$stamp.{json,md,svg}"

# bench/run.sh configures and builds build/bench itself.
microbench:
	@bash scripts/deps.sh bench
	@BUILD_DIR=$(abspath $(BUILD))/bench sh bench/run.sh

clean:
	rm -rf $(BUILD)
