# Build, test and demo entry points. Sources are picked up by folder, so adding a
# protocol, adapter, rule module or test file needs no edit here:
#   base/ gateway/ protocols/ adapters/ rules/ -> build/libgw.a (+ gateway/main.c -> build/gateway)
#   sim/                                  -> build/sim (shares no code with the gateway)
#   tests/unit/test_*.c                   -> one cmocka binary each, linked with libgw.a
#                                            (test_sim*.c: with build/libsim.a only)
#   tests/integration/itest_*.c           -> one cmocka binary each, plus tests/integration/harness.c
#   tests/fuzz/fuzz_*.c                   -> libFuzzer targets (make fuzz)
#   adapters/profiles/*.yaml, gateway/default.yaml -> embedded into the gateway binary

CC      ?= cc
SANITIZE ?=
BUILD   := build
ifneq ($(SANITIZE),)
BUILD   := build/san
SANFLAGS := -fsanitize=$(SANITIZE) -fno-sanitize-recover=all -fno-omit-frame-pointer
endif

PKGS    := libuv libmodbus libcoap-3-openssl sqlite3 yaml-0.1 libcjson libcbor libmicrohttpd
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
CFLAGS  ?= -O2 -g
CFLAGS  += -std=c11 -D_GNU_SOURCE -Wall -Wextra -Wshadow -Wno-unused-parameter \
           -Wformat=2 -Werror=implicit-function-declaration -I. -I$(BUILD)/gen $(PKG_CFLAGS) $(SANFLAGS)
LDFLAGS += $(SANFLAGS)
LIBS    := $(PKG_LIBS) -lpaho-mqtt3as -lssl -lcrypto -lpthread -lm

CORE_SRC := $(filter-out gateway/main.c,$(wildcard base/*.c gateway/*.c protocols/*.c adapters/*.c rules/*.c))
CORE_OBJ := $(CORE_SRC:%.c=$(BUILD)/obj/%.o) $(BUILD)/obj/gen/embedded.o
SIM_SRC  := $(wildcard sim/*.c)
SIM_OBJ  := $(SIM_SRC:%.c=$(BUILD)/obj/%.o)
UNIT_SRC := $(wildcard tests/unit/test_*.c)
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
ITEST_SRC := $(wildcard tests/integration/itest_*.c)
ITEST_BIN := $(ITEST_SRC:tests/integration/%.c=$(BUILD)/tests/%)
EMBED    := gateway/default.yaml gateway/status.html $(sort $(wildcard adapters/profiles/*.yaml))

.PHONY: all deps test unit itest demo bench bench-cost soak fuzz clean format format-check check-deps deps-graph install deb
all: $(BUILD)/gateway $(BUILD)/sim

deps:
	@scripts/deps.sh

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/gen/embedded.c: $(EMBED) scripts/embed.sh
	@mkdir -p $(dir $@)
	scripts/embed.sh $(EMBED) > $@

$(BUILD)/obj/gen/embedded.o: $(BUILD)/gen/embedded.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/libgw.a: $(CORE_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/gateway: $(BUILD)/obj/gateway/main.o $(BUILD)/libgw.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

$(BUILD)/sim: $(SIM_OBJ)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

# The simulator's pieces, for its own unit tests (which #include the sim files
# they test and take the rest, e.g. the kinds table, from here). They link no
# gateway code, so the linker keeps the simulator independent of the gateway.
$(BUILD)/libsim.a: $(filter-out $(BUILD)/obj/sim/main.o,$(SIM_OBJ))
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/tests/test_sim%: $(BUILD)/obj/tests/unit/test_sim%.o $(BUILD)/libsim.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS) -lcmocka

# test_sim itself: a pattern's % never matches an empty stem.
$(BUILD)/tests/test_sim: $(BUILD)/obj/tests/unit/test_sim.o $(BUILD)/libsim.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS) -lcmocka

$(BUILD)/tests/test_%: $(BUILD)/obj/tests/unit/test_%.o $(BUILD)/libgw.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS) -lcmocka

$(BUILD)/tests/itest_%: $(BUILD)/obj/tests/integration/itest_%.o $(BUILD)/obj/tests/integration/harness.o
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS) -lcmocka

# The Paho wrapper's test drives gateway code in-process against a real broker.
$(BUILD)/tests/itest_mqttc: $(BUILD)/obj/tests/integration/itest_mqttc.o \
		$(BUILD)/obj/tests/integration/harness.o $(BUILD)/libgw.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS) -lcmocka

# The include graph against the layer rules (scripts/check-deps.sh has the table).
check-deps:
	@scripts/check-deps.sh

deps-graph:
	@scripts/check-deps.sh --graph

# The suite: the layer and format checks, unit tests, then integration tests against the real binaries.
test: deps check-deps format-check
	@$(MAKE) --no-print-directory all $(UNIT_BIN) $(ITEST_BIN)
	@BUILD=$(BUILD) scripts/run-tests.sh $(UNIT_BIN) $(ITEST_BIN)

unit: deps
	@$(MAKE) --no-print-directory $(UNIT_BIN)
	@BUILD=$(BUILD) scripts/run-tests.sh $(UNIT_BIN)

demo: deps
	@$(MAKE) --no-print-directory all
	@BUILD=$(BUILD) scripts/demo.sh

bench: deps
	@$(MAKE) --no-print-directory all
	@BUILD=$(BUILD) bench/run.sh

# Cost per poll beside the libmodbus and epoll floors (issue 17), N = 1,000 ..
# 20,000; bench/results/cost.txt. See bench/cost_bench.sh (RUNS, MEASURE, ...).
bench-cost: deps
	@$(MAKE) --no-print-directory all
	@BUILD=$(BUILD) bench/cost_bench.sh

# The crash/disk-full/corruption/exhaustion soak (not part of test); see
# bench/soak.sh for its parameters (KILLS=100 BROKER_EVERY=10 ...); then the two-destination
# SIGKILL attack with 20 kills frozen and 20 free (6 + 6 in make test).
soak: deps
	@$(MAKE) --no-print-directory all $(BUILD)/tests/itest_attack_dest
	@BUILD=$(BUILD) bench/soak.sh
	@ATTACK_KILLS=20 BUILD=$(BUILD) scripts/run-tests.sh $(BUILD)/tests/itest_attack_dest

# Installation from source (DESTDIR, PREFIX as usual; SYSCONFDIR defaults to /etc) and
# the Debian package (build/deb/citygw_VERSION_ARCH.deb); both in scripts/, see
# docs/operations.md.
install: all
	@BUILD=$(BUILD) scripts/install.sh

deb: all
	@BUILD=$(BUILD) scripts/deb.sh

FUZZ_SECONDS ?= 60
fuzz: deps
	@FUZZ_SECONDS=$(FUZZ_SECONDS) scripts/fuzz.sh

FORMAT_SRC = $(wildcard base/*.[ch] gateway/*.[ch] protocols/*.[ch] adapters/*.[ch] rules/*.[ch] sim/*.[ch] tests/*/*.[ch] bench/*.c)
format:
	clang-format -i $(FORMAT_SRC)

# Lists the files .clang-format would change and fails if any (part of `make test`).
format-check:
	@mkdir -p $(BUILD); clang-format --dry-run -Werror $(FORMAT_SRC) 2>&1 | sed -n 's/^\([^:]*\):[0-9]*:[0-9]*: error:.*/\1/p' | sort -u > $(BUILD)/format-check.txt || true
	@n=$$(wc -l < $(BUILD)/format-check.txt); echo "format-check: $$n of $(words $(FORMAT_SRC)) files differ from .clang-format"; sed 's/^/  /' $(BUILD)/format-check.txt; [ "$$n" -eq 0 ]

clean:
	rm -rf build

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
