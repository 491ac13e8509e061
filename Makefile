# pensieve - build with `make`, test with `make test`, sanitizers with `make SAN=1 test`.
CC      ?= cc
SAN     ?=
SHARED  ?= ../shared
PYTHON  ?= /usr/bin/python3

ifeq ($(SAN),1)
BUILD   ?= build-san
OPT     := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all
else
BUILD   ?= build
OPT     := -O2 -g
endif

WERROR  ?=
PKG_LIB  := jansson libpcre2-8 libevent libevent_pthreads
PKG_TEST := check
CPPFLAGS += -Isrc -D_GNU_SOURCE -MMD -MP $(shell pkg-config --cflags $(PKG_LIB))
# -ffp-contract=off: the kernels add in llama.cpp's orders, with fused multiply-adds only where written; a
# compiler must not fuse others (clang would by default)
CFLAGS   += -std=c17 -Wall -Wextra -Wshadow -Wstrict-prototypes -Wno-unused-parameter $(OPT) -pthread -ffp-contract=off
ifeq ($(WERROR),1)
CFLAGS   += -Werror
endif
LDFLAGS  += $(filter -fsanitize=%,$(OPT)) -pthread
LDLIBS   += $(shell pkg-config --libs $(PKG_LIB)) -lm

LIB_SRC  := $(filter-out src/cli/%,$(wildcard src/*/*.c))
CLI_SRC  := $(wildcard src/cli/*.c)
TEST_SRC := $(wildcard tests/*.c)
BENCH_SRC := $(wildcard bench/*.c)

LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/%.o)
CLI_OBJ  := $(CLI_SRC:%.c=$(BUILD)/%.o)
TEST_OBJ := $(TEST_SRC:%.c=$(BUILD)/%.o)
BENCH_OBJ := $(BENCH_SRC:%.c=$(BUILD)/%.o)

BIN      := $(BUILD)/pensieve
TESTBIN  := $(BUILD)/check_pensieve

.PHONY: all test check unit cli-test server-test e2e models clean bench-tok bench-kern
all: $(BIN)

$(BUILD)/libpensieve.a: $(LIB_OBJ)
	@mkdir -p $(@D)
	$(AR) rcs $@ $^

$(BIN): $(CLI_OBJ) $(BUILD)/libpensieve.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/tests/%.o: CFLAGS += $(shell pkg-config --cflags $(PKG_TEST))
$(TESTBIN): $(TEST_OBJ) $(BUILD)/libpensieve.a
	$(CC) $(LDFLAGS) -o $@ $^ $(shell pkg-config --libs $(PKG_TEST)) $(LDLIBS)

$(BUILD)/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(CFLAGS) -c -o $@ $<

# Tokenizer benchmark: a 77 KB prompt built from $(SHARED)/docs, per vocabulary.
$(BUILD)/tok_bench: $(BUILD)/bench/tok_bench.o $(BUILD)/libpensieve.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

bench-tok: $(BUILD)/tok_bench
	$(BUILD)/tok_bench $(SHARED)

# Kernel benchmark: each matmul kernel against the file-layout one and a plain read of the weight's bytes, the
# tiled attention against its scalar twin, alternating in one run (bench/kern_bench.c); the q4_0 matmuls of 1
# and 4 tokens (a decode step of one stream and of four) read a 151 MB weight from memory; the int8 dot
# products' instruction sequences alone (bench/kern_loops.c).
$(BUILD)/kern_bench: $(BUILD)/bench/kern_bench.o $(BUILD)/bench/kern_loops.o $(BUILD)/tests/rand_data.o $(BUILD)/libpensieve.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

bench-kern: $(BUILD)/kern_bench
	for t in q4_0 q8_0 q4_K q5_K q6_K f16 bf16; do $(BUILD)/kern_bench matmul $$t 2048 2048 128 -r 10 || exit 1; done
	for n in 1 4; do $(BUILD)/kern_bench matmul q4_0 32768 8192 $$n -r 10 || exit 1; done
	for hd in 32 64 128; do $(BUILD)/kern_bench attn $$hd 256 -r 20 || exit 1; done
	$(BUILD)/kern_bench loops -r 20

# Synthetic models for the reference tests, recreated from ../shared/ref/arch.
models:
	@tests/make_models.sh $(SHARED) $(BUILD)/cache $(PYTHON)

# every suite with the dispatched (AVX2) kernels, then the model suite again on the scalar twins
unit: $(TESTBIN) $(BUILD)/kern_bench models
	PV_SHARED=$(SHARED) PV_CACHE=$(BUILD)/cache $(TESTBIN)
	PV_SHARED=$(SHARED) PV_CACHE=$(BUILD)/cache PV_KERNELS=scalar $(TESTBIN) model
	$(BUILD)/kern_bench matmul q4_K 16 512 5 -r 2 >/dev/null && $(BUILD)/kern_bench attn 40 3 -r 2 >/dev/null && \
	  $(BUILD)/kern_bench loops -r 1 >/dev/null

cli-test: $(BIN)
	tests/cli_test.sh $(BIN) $(SHARED)

# the HTTP server on 127.0.0.1: endpoints, errors, streaming, disconnects, load, memory, shutdown
server-test: $(BIN)
	PV_SAN=$(SAN) tests/server_test.sh $(BIN) $(SHARED)

# the npm Anthropic and OpenAI SDKs and the Claude Code CLI against the server with a 32k context (tests/e2e;
# skipped without node/npm or $(SHARED), and under SAN=1); `npm ci` first when node_modules is missing or older
# than the lock
E2E := tests/e2e
e2e: $(BIN)
	@if [ "$(SAN)" = 1 ]; then echo "e2e: skipped under SAN=1"; \
	elif ! command -v node >/dev/null || ! command -v npm >/dev/null; then echo "e2e: skipped: node/npm absent"; \
	elif [ ! -d $(SHARED)/tools ]; then echo "e2e: skipped: $(SHARED) is absent"; \
	else \
	  if [ ! -f $(E2E)/node_modules/.package-lock.json ] || [ $(E2E)/package-lock.json -nt $(E2E)/node_modules/.package-lock.json ] || \
	     [ $(E2E)/package.json -nt $(E2E)/node_modules/.package-lock.json ]; then \
	    (cd $(E2E) && npm ci --no-audit --no-fund) || exit 1; fi; \
	  $(E2E)/run.sh $(BIN) $(SHARED) $(BUILD)/cache $(PYTHON); fi

test: unit cli-test server-test e2e

check: test

clean:
	rm -rf build build-san build-clang

-include $(LIB_OBJ:.o=.d) $(CLI_OBJ:.o=.d) $(TEST_OBJ:.o=.d) $(BENCH_OBJ:.o=.d)
