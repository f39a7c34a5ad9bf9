# s3hook build. `make` builds build/s3hook; `make check` installs what is missing,
# builds, and runs every test (unit tests under ASan+UBSan, end-to-end tests
# against the local Ceph RGW); `make demo` runs the main job end to end.

PREFIX ?= /usr/local
CC ?= cc
# gnutls: only its headers are new (libmicrohttpd links it already), to check client certificates.
PKGS := libcurl libcrypto libxml-2.0 uuid jansson sqlite3 libmicrohttpd libpq gnutls
WARN := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
	-Wwrite-strings -Wvla -Wformat=2 -fno-common
CFLAGS ?= -O2 -g
ALL_CFLAGS = -std=gnu11 $(WARN) $(CFLAGS) -I. -D_GNU_SOURCE \
	-DS3HOOK_LIBEXEC='"$(PREFIX)/libexec/s3hook"' -DS3HOOK_VERSION='"$(VERSION)"' \
	$(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LIBS = $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lpthread
CHECK_LIBS = $(shell pkg-config --libs check 2>/dev/null)
VERSION := $(shell git describe --always --dirty 2>/dev/null || echo 0.1)

# The library is everything below cmd/, so tests can call the work itself.
LIB_SRC := $(wildcard core/*.c s3/*.c triggers/*.c)
CMD_SRC := $(wildcard cmd/*.c)
TEST_SRC := $(wildcard tests/check_*.c)

B ?= build
LIB_OBJ := $(LIB_SRC:%.c=$(B)/%.o)
CMD_OBJ := $(CMD_SRC:%.c=$(B)/%.o)
TESTS := $(TEST_SRC:tests/%.c=$(B)/tests/%)

.SECONDARY:
.PHONY: all deps check unit unit-asan e2e demo install clean format format-check fuzz \
	fuzz-check fuzz-build print-pkgs
all: $(B)/s3hook

deps:
	@scripts/install-deps

$(B)/%.o: %.c
	@mkdir -p $(dir $@)
	@echo "CC $<"
	@$(CC) $(ALL_CFLAGS) -MMD -MP -c -o $@ $<

$(B)/libs3hook.a: $(LIB_OBJ)
	@rm -f $@
	@ar rcs $@ $^

$(B)/s3hook: $(CMD_OBJ) $(B)/libs3hook.a
	@echo "LINK $@"
	@$(CC) $(ALL_CFLAGS) -o $@ $(CMD_OBJ) $(B)/libs3hook.a $(LIBS)

$(B)/tests/%: $(B)/tests/%.o $(B)/tests/testutil.o $(B)/libs3hook.a
	@echo "LINK $@"
	@$(CC) $(ALL_CFLAGS) -o $@ $< $(B)/tests/testutil.o $(B)/libs3hook.a $(CHECK_LIBS) $(LIBS)

$(B)/tests/%.o: tests/%.c
	@mkdir -p $(dir $@)
	@echo "CC $<"
	@$(CC) $(ALL_CFLAGS) $(shell pkg-config --cflags check) -MMD -MP -c -o $@ $<

unit: $(TESTS) $(B)/s3hook
	@tests/run-unit $(TESTS)

# Unit tests again under AddressSanitizer (with LeakSanitizer) and UBSan.
unit-asan:
	@$(MAKE) --no-print-directory B=build-asan \
		CFLAGS="-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all" unit

e2e: $(B)/s3hook
	@tests/run-e2e

check: deps
	@$(MAKE) --no-print-directory all
	@$(MAKE) --no-print-directory unit-asan
	@$(MAKE) --no-print-directory fuzz-check
	@$(MAKE) --no-print-directory e2e

# libFuzzer targets (tests/fuzz/README.md): the library compiled again with clang
# and the fuzzer's coverage into build-fuzz/. `make fuzz` runs each target
# FUZZ_SECONDS and keeps what it learns in build-fuzz/corpus/; `make
# fuzz-check` runs each 15 s from the seeds alone, as `make check` does.
FUZZ_TARGETS := event xml ini sigv4 sns
FUZZ_SECONDS ?= 60
FUZZ_CC ?= clang
FUZZ_BINS := $(FUZZ_TARGETS:%=build-fuzz/fuzz_%)

$(B)/fuzz_%: $(B)/tests/fuzz/fuzz_%.o $(B)/libs3hook.a
	@echo "LINK $@"
	@$(CC) $(ALL_CFLAGS) -fsanitize=fuzzer -o $@ $< $(B)/libs3hook.a $(LIBS)

fuzz-build:
	@$(MAKE) --no-print-directory B=build-fuzz CC=$(FUZZ_CC) CFLAGS="-O1 -g \
		-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all \
		-fno-omit-frame-pointer" $(FUZZ_BINS)

fuzz: fuzz-build
	@tests/fuzz/run $(FUZZ_SECONDS) $(FUZZ_TARGETS)

fuzz-check: fuzz-build
	@tests/fuzz/run --check 15 $(FUZZ_TARGETS)

demo: deps all
	@scripts/demo

install: $(B)/s3hook
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/libexec/s3hook
	install -m 755 $(B)/s3hook $(DESTDIR)$(PREFIX)/bin/s3hook
	for h in scripts/handlers/*; do [ -f "$$h" ] && install -m 755 "$$h" $(DESTDIR)$(PREFIX)/libexec/s3hook/; done; true
	install -d $(DESTDIR)$(PREFIX)/lib/systemd/system
	sed 's|@PREFIX@|$(PREFIX)|g' scripts/s3hook.service >$(DESTDIR)$(PREFIX)/lib/systemd/system/s3hook.service
	chmod 644 $(DESTDIR)$(PREFIX)/lib/systemd/system/s3hook.service

format:
	clang-format -i $(LIB_SRC) $(CMD_SRC) $(wildcard */*.h tests/*.c tests/*.h)

format-check:
	clang-format --dry-run --Werror $(LIB_SRC) $(CMD_SRC) $(wildcard */*.h tests/*.c tests/*.h)

clean:
	rm -rf build build-asan build-fuzz

-include $(LIB_OBJ:.o=.d) $(CMD_OBJ:.o=.d) $(TESTS:%=%.d) \
	$(FUZZ_TARGETS:%=$(B)/tests/fuzz/fuzz_%.d)

# The pkg-config packages the library links with (for programs built outside make, such as benchmarks).
print-pkgs:
	@echo $(PKGS)
