# moonvisor - build, run and test.  `make run` and `make test` work on a fresh
# Debian 12 machine: the deps target installs what is missing (as root).

DEBIAN_PACKAGES := gcc make pkg-config lua5.4 liblua5.4-dev lua-busted libunicorn-dev nasm valgrind
BUILD   := build
CC      ?= cc
LUA_CFLAGS := $(shell pkg-config --cflags lua5.4 2>/dev/null)
LUA_LIBS   := $(shell pkg-config --libs lua5.4 2>/dev/null)
UC_LIBS    := $(shell pkg-config --libs unicorn 2>/dev/null || echo -lunicorn)
OPT     ?= -O2 -g
CFLAGS  := $(OPT) -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -fPIC
LDFLAGS := $(LINKOPT)
LIBS    := $(UC_LIBS) -lpthread

CORE_SRC := $(wildcard core/*.c)
BIND_SRC := $(filter-out bindings/main.c,$(wildcard bindings/*.c))
CORE_OBJ := $(CORE_SRC:%.c=$(BUILD)/obj/%.o)
BIND_OBJ := $(BIND_SRC:%.c=$(BUILD)/obj/%.o)
MAIN_OBJ := $(BUILD)/obj/bindings/main.o
HEADERS  := $(wildcard core/*.h bindings/*.h)

GUESTS := $(patsubst examples/guests/%.asm,build/guests/%.bin,$(wildcard examples/guests/*.asm))

BUSTED ?= lua5.4 /usr/bin/busted
SANITIZE := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
SPEC_ENV := LUA_PATH="scripts/?.lua;scripts/?/init.lua;spec/?.lua;;" LUA_CPATH="$(BUILD)/lua/?.so;;"

.PHONY: all deps run test test-asan test-valgrind bench clean guests

all: $(BUILD)/moonvisor $(BUILD)/lua/moonvisor/core.so guests

# Installs the Debian packages that are missing; does nothing when all are there.
deps:
	@missing=""; for p in $(DEBIAN_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  if [ "$$(id -u)" != 0 ]; then echo "run as root (or: sudo apt-get install -y$$missing)"; exit 1; fi; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; \
	fi

$(BUILD)/obj/%.o: %.c $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LUA_CFLAGS) -c $< -o $@

$(BUILD)/libmoonvisor.a: $(CORE_OBJ)
	ar rcs $@ $^

$(BUILD)/lua/moonvisor/core.so: $(BIND_OBJ) $(BUILD)/libmoonvisor.a
	@mkdir -p $(dir $@)
	$(CC) -shared $(LDFLAGS) -o $@ $(BIND_OBJ) $(BUILD)/libmoonvisor.a $(LIBS)

$(BUILD)/moonvisor: $(MAIN_OBJ) $(BIND_OBJ) $(BUILD)/libmoonvisor.a
	$(CC) $(LDFLAGS) -o $@ $(MAIN_OBJ) $(BIND_OBJ) $(BUILD)/libmoonvisor.a $(LUA_LIBS) $(LIBS) -lm -ldl -Wl,-E

guests: $(GUESTS)

build/guests/%.bin: examples/guests/%.asm
	@mkdir -p $(dir $@)
	nasm -f bin -o $@ $<

# The flagship example; on a host without /dev/kvm it says so and uses the
# software backend rather than failing.
run: deps all
	@if [ -c /dev/kvm ] || [ -n "$$MOONVISOR_BACKEND" ]; then $(BUILD)/moonvisor examples/hello.lua; \
	else echo "(no /dev/kvm here: running on the soft backend)"; MOONVISOR_BACKEND=soft $(BUILD)/moonvisor examples/hello.lua; fi

# Every spec runs once per backend in TEST_BACKENDS.  The kvm pass needs
# /dev/kvm: without it its specs FAIL (never skip) with the core's message.
# The soft pass leaves out the specs tagged #kvm.  The last line adds up both.
TEST_BACKENDS ?= kvm soft

test: deps all
	@total_p=0; total_f=0; \
	for b in $(TEST_BACKENDS); do \
	  echo "== specs on the $$b backend"; \
	  tags=""; [ "$$b" = kvm ] || tags="--exclude-tags=kvm"; \
	  MOONVISOR_BACKEND=$$b $(SPEC_ENV) $(BUSTED) -o spec/summary.lua $$tags spec 2>&1 | tee $(BUILD)/spec-$$b.log; \
	  line=$$(grep -E '^spec: [0-9]+ passed, [0-9]+ failed' $(BUILD)/spec-$$b.log | tail -1); \
	  p=$$(echo "$$line" | sed -E 's/^spec: ([0-9]+) passed.*/\1/'); \
	  f=$$(echo "$$line" | sed -E 's/^spec: [0-9]+ passed, ([0-9]+) failed.*/\1/'); \
	  [ -n "$$line" ] || { p=0; f=1; echo "the $$b pass printed no summary"; }; \
	  total_p=$$((total_p + p)); total_f=$$((total_f + f)); \
	done; \
	echo; echo "backends: $(TEST_BACKENDS)"; \
	echo "spec: $$total_p passed, $$total_f failed"; \
	[ $$total_f -eq 0 ]

# The whole suite again with core and bindings built with ASan and UBSan into
# build/asan/moonvisor, which runs busted itself (moonvisor.core is
# preloaded there, so no uninstrumented module is loaded).  Any report fails.
test-asan: deps
	$(MAKE) --no-print-directory BUILD=build/asan OPT="-O1 -g $(SANITIZE)" LINKOPT="$(SANITIZE)" \
	  build/asan/moonvisor guests
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:halt_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	MOONVISOR_EXE=build/asan/moonvisor \
	  $(MAKE) --no-print-directory test BUILD=build/asan BUSTED="build/asan/moonvisor /usr/bin/busted" \
	  OPT="-O1 -g $(SANITIZE)" LINKOPT="$(SANITIZE)"

# A representative subset under valgrind memcheck: create/map/trap/enter/
# close, handler errors, the executable.  Any error fails the run.
VALGRIND_SPECS := spec/exit_spec.lua spec/vcpu_spec.lua
test-valgrind: deps all
	@command -v valgrind >/dev/null || { echo "valgrind is missing: apt-get install valgrind"; exit 1; }
	@for b in $(TEST_BACKENDS); do \
	  echo "== valgrind, $$b backend"; \
	  MOONVISOR_BACKEND=$$b $(SPEC_ENV) valgrind -q --error-exitcode=99 --leak-check=full \
	    --errors-for-leak-kinds=definite --smc-check=all-non-file \
	    $(BUILD)/moonvisor /usr/bin/busted -o spec/summary.lua $(VALGRIND_SPECS) || exit 1; \
	done

bench: deps all
	@$(MAKE) --no-print-directory $(BUILD)/bench/exit
	$(BUILD)/bench/exit $$(test -e /dev/kvm || echo -b soft) $(BENCH_ARGS)

$(BUILD)/bench/exit: bench/exit.c $(BIND_OBJ) $(BUILD)/libmoonvisor.a $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LUA_CFLAGS) $(LDFLAGS) -o $@ bench/exit.c $(BIND_OBJ) $(BUILD)/libmoonvisor.a $(LUA_LIBS) $(LIBS) -lm -ldl -Wl,-E

clean:
	rm -rf $(BUILD)
