# natscope - a thin wrapper over CMake so that a newcomer needs two commands:
#   make run    install build deps, build, audit this host (needs root)
#   make test   install test deps, build, run every test with ctest
#   make test-long  the end-to-end tests with their long variants (NATSCOPE_LONG=1)
#   make package    a Debian package (CPack) in build-pkg/
#   make demo       natscope on a namespace lab with traffic (root): prints the URL
BUILD      ?= build
ASAN_BUILD ?= build-asan
DB         ?= ./natscope.db
LISTEN     ?= 127.0.0.1:9628
NATSCOPE_WERROR ?= OFF
JOBS       ?= $(shell nproc 2>/dev/null || echo 2)

.PHONY: all build deps test-deps run test test-long test-asan bench package demo clean

all: build

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) -DNATSCOPE_WERROR=$(NATSCOPE_WERROR)

build: $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

deps:
	tools/deps.sh build

test-deps:
	tools/deps.sh test

run: deps
	$(MAKE) build
	$(BUILD)/natscope run --db $(DB) --listen $(LISTEN)

test: test-deps
	$(MAKE) build
	ctest --test-dir $(BUILD) --output-on-failure

# The end-to-end tests with their heavy variants (e.g. test_stall with the
# issue's 200k + 1M entries, which raises nf_conntrack_max host-wide under
# the e2e lab lock).  Needs root.
test-long: test-deps
	$(MAKE) build
	NATSCOPE_LONG=1 ctest --test-dir $(BUILD) -R '^e2e\.' --output-on-failure

test-asan: test-deps
	cmake -S . -B $(ASAN_BUILD) -DNATSCOPE_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug \
	      -DNATSCOPE_WERROR=$(NATSCOPE_WERROR)
	cmake --build $(ASAN_BUILD) -j $(JOBS)
	ASAN_OPTIONS=detect_leaks=1 ctest --test-dir $(ASAN_BUILD) --output-on-failure

bench:
	tools/deps.sh bench
	$(MAKE) build
	bench/run

# A NAT lab in network namespaces with steady traffic and bursts, natscope
# on its gateway, reachable from this host; Ctrl-C removes it all.
demo: test-deps
	$(MAKE) build
	python3 tools/demo.py

# The Debian package, built with the package's prefix (/usr) in its own
# directory: build-pkg/natscope_VERSION_ARCH.deb.
package: deps
	cmake -S . -B build-pkg -DCMAKE_INSTALL_PREFIX=/usr \
	      -DCMAKE_SKIP_INSTALL_ALL_DEPENDENCY=ON -DNATSCOPE_WERROR=$(NATSCOPE_WERROR)
	cmake --build build-pkg -j $(JOBS) --target natscope manpage
	cd build-pkg && cpack -G DEB

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) build-pkg
