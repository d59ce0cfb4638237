# zpf build.  GNU Make, pkg-config for every library.
#
#   make              build everything into build/
#   make test         run every test suite; ends with "N passed, N failed"
#   make test SAN=1   the same under AddressSanitizer + UBSan (build/san/)
#   make demo         five real agents on loopback lose a node and recover
#   make sim-demo     the same story in the simulator, narrated
#   make deps         install missing Debian packages (packaging/deps.sh)
#   make fuzz         build and run the libFuzzer targets (clang)
#   WERROR=1          turn warnings into errors (CI does)

CC      ?= cc
CORE_PKGS := msgpack libsodium
AGENT_PKGS := $(CORE_PKGS) libuv sqlite3 yaml-0.1 jansson

WARN    := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
           -Wpointer-arith -Wvla
CFLAGS  ?= -O2 -g
CFLAGS  += -std=c11 $(WARN) -Iinclude -D_DEFAULT_SOURCE
ifeq ($(WERROR),1)
CFLAGS  += -Werror
endif

ifeq ($(SAN),1)
B       := build/san
CFLAGS  += -O1 -fsanitize=address,undefined -fno-omit-frame-pointer \
           -fno-sanitize-recover=all
LDFLAGS += -fsanitize=address,undefined
else
B       := build
endif

PKG_CFLAGS = $(shell pkg-config --cflags $(AGENT_PKGS))
PKG_LIBS   = $(shell pkg-config --libs $(CORE_PKGS))
AGENT_LIBS = $(shell pkg-config --libs $(AGENT_PKGS))
CMOCKA_LIBS = $(shell pkg-config --libs cmocka)

GOSSIP_SRC := $(wildcard gossip/*.c)
GOSSIP_OBJ := $(GOSSIP_SRC:%.c=$(B)/obj/%.o)
LIBGOSSIP  := $(B)/libzpfgossip.a

# agent/: everything but the two programs goes into one library.
AGENT_MAIN := agent/zpfd.c agent/zpfctl.c
AGENT_SRC  := $(filter-out $(AGENT_MAIN),$(wildcard agent/*.c))
AGENT_OBJ  := $(AGENT_SRC:%.c=$(B)/obj/%.o)
LIBAGENT   := $(B)/libzpfagent.a
PROGS      := $(patsubst agent/%.c,$(B)/%,$(wildcard $(AGENT_MAIN)))

SIM_LIB_SRC := tests/sim/sim.c
SIM_LIB_OBJ := $(SIM_LIB_SRC:%.c=$(B)/obj/%.o)

UNIT_SRC   := $(wildcard tests/unit/test_*.c)
UNIT_BIN   := $(UNIT_SRC:tests/unit/%.c=$(B)/tests/%)
SIMTEST_SRC := $(wildcard tests/sim/test_*.c)
SIMTEST_BIN := $(SIMTEST_SRC:tests/sim/%.c=$(B)/tests/%)

all: $(LIBGOSSIP) $(LIBAGENT) $(PROGS) $(B)/zpf-sim $(UNIT_BIN) $(SIMTEST_BIN)

$(B)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(PKG_CFLAGS) -Igossip -Iagent -Itests/sim -MMD -MP -c $< -o $@

$(LIBGOSSIP): $(GOSSIP_OBJ)
	@mkdir -p $(dir $@)
	$(AR) rcs $@ $^

$(LIBAGENT): $(AGENT_OBJ)
	@mkdir -p $(dir $@)
	$(AR) rcs $@ $^

$(B)/zpfd $(B)/zpfctl: $(B)/%: $(B)/obj/agent/%.o $(LIBAGENT) $(LIBGOSSIP)
	$(CC) $(LDFLAGS) $^ $(AGENT_LIBS) -lm -o $@

$(B)/zpf-sim: $(B)/obj/tests/sim/zpf_sim.o $(SIM_LIB_OBJ) $(LIBGOSSIP)
	$(CC) $(LDFLAGS) $^ $(PKG_LIBS) -lm -o $@

$(B)/tests/%: $(B)/obj/tests/unit/%.o $(LIBAGENT) $(LIBGOSSIP)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ $(AGENT_LIBS) $(CMOCKA_LIBS) -lm -o $@

$(B)/tests/test_sim_%: $(B)/obj/tests/sim/test_sim_%.o $(SIM_LIB_OBJ) $(LIBGOSSIP)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ $(PKG_LIBS) $(CMOCKA_LIBS) -lm -o $@

test: all
	@B=$(B) tests/run-tests.sh

demo: $(B)/zpfd $(B)/zpfctl
	@tests/demo.sh $(B)

sim-demo: $(B)/zpf-sim
	@tests/sim/demo.sh $(B)/zpf-sim

deps:
	@sh packaging/deps.sh

# libFuzzer targets need clang.  FUZZ_SECONDS per target.
FUZZ_SECONDS ?= 60
FUZZ_SRC := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BIN := $(FUZZ_SRC:tests/fuzz/%.c=build/fuzz/%)
build/fuzz/%: tests/fuzz/%.c $(GOSSIP_SRC) $(AGENT_SRC)
	@mkdir -p $(dir $@)
	clang -std=c11 -g -O1 -Iinclude -Igossip -Iagent -D_DEFAULT_SOURCE \
	    $(PKG_CFLAGS) -fsanitize=fuzzer,address,undefined $^ $(AGENT_LIBS) -lm -o $@
fuzz: $(FUZZ_BIN)
	@for f in $(FUZZ_BIN); do n=$$(basename $$f); c=build/fuzz/corpus-$${n#fuzz_}; \
	    mkdir -p $$c; echo "fuzz: $$n for $(FUZZ_SECONDS)s"; \
	    $$f -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
	        -artifact_prefix=build/fuzz/ $$c tests/fuzz/corpus/$${n#fuzz_} \
	        >build/fuzz/$$n.log 2>&1; rc=$$?; \
	    grep -E 'stat::number_of_executed_units|ERROR|SUMMARY' build/fuzz/$$n.log; \
	    [ $$rc -eq 0 ] || { echo "fuzz: $$n failed, see build/fuzz/$$n.log"; exit 1; }; done

clean:
	rm -rf build

.PHONY: all test demo sim-demo deps fuzz clean
.SECONDARY:
-include $(shell find build -name '*.d' 2>/dev/null)
