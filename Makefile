# weft — a thin wrapper over CMake and CTest; the real steps are in scripts/.
#
#   make test       the whole CI job: install missing Debian packages, then
#                   gcc ASan+UBSan, clang ASan+UBSan, clang TSan (concurrency
#                   tests), valgrind memcheck + the install test (find_package
#                   and pkg-config consumer); see scripts/test.sh. Build dirs:
#                   build/asan-gcc, build/asan-clang, build/tsan-clang, build/memcheck
#   make test-gcc | test-clang | test-tsan | test-memcheck | test-install
#                   one stage of it
#   make build      Release build in build/release
#   make install PREFIX=/usr/local
#   make bench      Release build with the benchmarks, then run them
#   make deps       install every package any target needs
#   make clean      remove build/

JOBS   ?= 2
BUILD  ?= build
PREFIX ?= /usr/local
export JOBS BUILD
MAKEFLAGS += --no-print-directory

STAGES := gcc clang tsan memcheck install

.PHONY: all build test $(STAGES:%=test-%) install bench deps clean

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

# bench/run.sh configures and builds build/bench itself; without it, the
# CMake target `bench` builds and runs the benchmarks.
bench:
	@bash scripts/deps.sh bench
	@if [ -f bench/run.sh ]; then \
	  BUILD_DIR=$(abspath $(BUILD))/bench sh bench/run.sh; \
	else \
	  cmake -S . -B $(BUILD)/bench -DCMAKE_BUILD_TYPE=Release -DWEFT_BENCH=ON -DWEFT_TESTS=OFF && \
	  cmake --build $(BUILD)/bench -j$(JOBS) && \
	  cmake --build $(BUILD)/bench --target bench; \
	fi

clean:
	rm -rf $(BUILD)
