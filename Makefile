# moonvisor - build, run and test.  `make run` and `make test` work on a fresh
# Debian 12 machine: the deps target installs what is missing (as root).
#
# Nothing that comes from a package (pkg-config, the compiler) is asked at
# parse time: on a fresh machine it is not there yet.  The flags below are
# recursive (=) variables, expanded only in the recipes that build, and the
# targets that install packages first (run, test, ...) build through a
# sub-make, `$(MAKE) all`, started by their recipe once deps has run (never
# `target: deps all`: with -j, all would build while deps installs).
# spec/makefile_spec.lua checks both.

DEBIAN_PACKAGES := gcc make pkg-config binutils lua5.4 liblua5.4-dev lua-busted libunicorn-dev nasm valgrind strace libreadline-dev libcapstone-dev tmux gdb
# AFL++ (afl-fuzz, afl-showmap): spec/afl_spec.lua and bench/afl.lua drive moonvisor with it
AFL_PACKAGES := afl++
# bash: the test recipe reads PIPESTATUS
SHELL   := /bin/bash
BUILD   := build
CC      ?= cc
LUA_CFLAGS = $(shell pkg-config --cflags lua5.4 2>/dev/null)
LUA_LIBS   = $(shell pkg-config --libs lua5.4 2>/dev/null)
# The executable (and bench/exit) link Debian's static liblua5.4.a (from
# liblua5.4-dev) instead of the shared library: no symbol lookups for Lua's
# API at start-up (-0.25M instructions of a Multiboot start, bench/counts.sh)
# and no PLT jump per API call.  -Wl,-E still exports the API, so C modules a
# script requires (lfs, lpeg, ...) bind to the executable's Lua.
EXE_LUA_LIBS = -l:liblua5.4.a
UC_LIBS    = $(shell pkg-config --libs unicorn 2>/dev/null || echo -lunicorn)
OPT     ?= -O2 -g
CFLAGS  := $(OPT) -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -fPIC
LDFLAGS := $(LINKOPT)
LIBS    := -ldl -lpthread   # libunicorn and libcapstone are dlopen()ed on first use
EXE_LIBS :=          # libreadline too is dlopen()ed, when the REPL starts (bindings/main.c)

CORE_SRC := $(wildcard core/*.c core/kvm/*.c core/soft/*.c)
BIND_SRC := $(filter-out bindings/main.c bindings/lstate.c bindings/lpaths.c,$(wildcard bindings/*.c))   # main.c, lstate.c, lpaths.c: the executable's own
CORE_OBJ := $(CORE_SRC:%.c=$(BUILD)/obj/%.o)
BIND_OBJ := $(BIND_SRC:%.c=$(BUILD)/obj/%.o)
MAIN_OBJ := $(BUILD)/obj/bindings/main.o $(BUILD)/obj/bindings/lstate.o $(BUILD)/obj/bindings/lpaths.o
HEADERS  := $(wildcard core/*.h core/kvm/*.h core/soft/*.h bindings/*.h)

GUESTS := $(patsubst examples/guests/%.asm,build/guests/%.bin,$(wildcard examples/guests/*.asm))

BUSTED ?= lua5.4 /usr/bin/busted
SANITIZE := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
SPEC_ENV := LUA_PATH="scripts/?.lua;scripts/?/init.lua;spec/?.lua;;" LUA_CPATH="$(BUILD)/lua/?.so;;"

.PHONY: all deps deps-afl run test test-asan test-valgrind bench clean guests
.PHONY: deps-vm test-vm probe-kvm test-kvm

# The empty recipe keeps the sub-make of run, test, ... quiet ("Nothing to be
# done") when everything is built.
all: $(BUILD)/moonvisor $(BUILD)/lua/moonvisor/core.so guests lua-bc
	@:

# The Lua library precompiled by bindings/dump.lua (string.dump, without
# local variable names; each chunk keeps the name its source has when
# build/moonvisor loads it from ../scripts).  build/moonvisor loads
# $(BUILD)/lua-bc/moonvisor/x.luac instead of scripts/moonvisor/x.lua when it
# is not older (bindings/main.c); the sources stay the truth.
LUA_BC := $(patsubst scripts/%.lua,$(BUILD)/lua-bc/%.luac,$(shell find scripts/moonvisor -name '*.lua' | sort))
.PHONY: lua-bc
lua-bc: $(LUA_BC)
$(BUILD)/lua-bc/%.luac: scripts/%.lua bindings/dump.lua
	@mkdir -p $(dir $@)
	@lua5.4 bindings/dump.lua $< $(abspath $(BUILD))/../$< $@ </dev/null || { rm -f $@; exit 1; }

# Installs the Debian packages that are missing; does nothing when all are there.
# deps-afl: the same for AFL++, which the specs and the bench need.
deps deps-afl: PACKAGES = $(if $(filter deps-afl,$@),$(AFL_PACKAGES),$(DEBIAN_PACKAGES))
deps deps-afl:
	@missing=""; for p in $(PACKAGES); do \
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
	$(CC) $(LDFLAGS) -o $@ $(MAIN_OBJ) $(BIND_OBJ) $(BUILD)/libmoonvisor.a $(EXE_LUA_LIBS) $(LIBS) $(EXE_LIBS) -lm -ldl -Wl,-E

guests: $(GUESTS)

build/guests/%.bin: examples/guests/%.asm
	@mkdir -p $(dir $@)
	nasm -f bin -o $@ $<

# The flagship example; on a host without /dev/kvm it says so and uses the
# software backend rather than failing.
run: deps
	@$(MAKE) --no-print-directory all
	@if [ -c /dev/kvm ] || [ -n "$$MOONVISOR_BACKEND" ]; then $(BUILD)/moonvisor examples/hello.lua; \
	else echo "(no /dev/kvm here: running on the soft backend)"; MOONVISOR_BACKEND=soft $(BUILD)/moonvisor examples/hello.lua; fi

# Every spec runs once per backend in TEST_BACKENDS.  The kvm pass needs
# /dev/kvm: without it its specs FAIL (never skip) with the core's message.
# On kvm-pvm (CPL0 code emulated without x87/SSE, ...) some fail for the
# host's reasons (README "Which specs run where"): `make test-kvm` and CI run
# the kvm pass in the nested test VM there.
# The soft pass leaves out the specs tagged #kvm.  The last line adds up both.
# SPECS narrows the run to some spec files (default: all of spec/).
TEST_BACKENDS ?= kvm soft
SPECS ?= spec

test: deps deps-afl
	@$(MAKE) --no-print-directory all
	@total_p=0; total_f=0; \
	for b in $(TEST_BACKENDS); do \
	  echo "== specs on the $$b backend"; \
	  tags="--exclude-tags=linux"; [ "$$b" = kvm ] || tags="--exclude-tags=kvm,linux"; \
	  MOONVISOR_BACKEND=$$b $(SPEC_ENV) $(BUSTED) -o spec/summary.lua $$tags $(SPECS) 2>&1 | tee $(BUILD)/spec-$$b.log; \
	  status=$${PIPESTATUS[0]}; \
	  set -- $$(spec/tally $(BUILD)/spec-$$b.log); p=$${1:-}; f=$${2:-}; \
	  [ -n "$$p" ] || { p=0; f=1; echo "the $$b pass printed no summary"; }; \
	  if [ "$$status" -ne 0 ] && [ "$$f" -eq 0 ]; then \
	    f=1; echo "the $$b pass exited with status $$status after its specs (a sanitizer report or a crash): counted as a failure"; \
	  fi; \
	  total_p=$$((total_p + p)); total_f=$$((total_f + f)); \
	done; \
	echo; echo "backends: $(TEST_BACKENDS)"; \
	echo "spec: $$total_p passed, $$total_f failed"; \
	[ $$total_f -eq 0 ]

# The whole suite again with core and bindings built with ASan and UBSan into
# build/asan/moonvisor, which runs busted itself (moonvisor.core is
# preloaded there, so no uninstrumented module is loaded).  Any report fails.
test-asan: deps deps-afl
	$(MAKE) --no-print-directory BUILD=build/asan OPT="-O1 -g $(SANITIZE)" LINKOPT="$(SANITIZE)" \
	  build/asan/moonvisor guests
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:halt_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	LSAN_OPTIONS=suppressions=$(CURDIR)/spec/lsan.supp:print_suppressions=0 \
	MOONVISOR_EXE=build/asan/moonvisor MOONVISOR_SCRIPTS=$(CURDIR)/scripts \
	  $(MAKE) --no-print-directory test BUILD=build/asan BUSTED="build/asan/moonvisor /usr/bin/busted" \
	  OPT="-O1 -g $(SANITIZE)" LINKOPT="$(SANITIZE)"

# The SMP specs (TSAN_SPECS) with core and bindings built with ThreadSanitizer
# into build/tsan/moonvisor, which runs busted itself: guest:run's VCPU
# threads on KVM (in the test VM: make test-vm VM_CMD='make test-tsan
# TEST_BACKENDS=kvm'), the round-robin on soft.  Any report fails.  Not part
# of `make test`.
TSAN := -fsanitize=thread -fno-omit-frame-pointer
TSAN_SPECS ?= spec/smp_spec.lua
.PHONY: test-tsan tsan-build test-tsan-vm
tsan-build: deps
	$(MAKE) --no-print-directory BUILD=build/tsan OPT="-O1 -g $(TSAN)" LINKOPT="$(TSAN)" build/tsan/moonvisor guests
test-tsan: tsan-build
	TSAN_OPTIONS="halt_on_error=1 exitcode=66 second_deadlock_stack=1" \
	MOONVISOR_EXE=build/tsan/moonvisor MOONVISOR_SCRIPTS=$(CURDIR)/scripts \
	  $(MAKE) --no-print-directory test BUILD=build/tsan BUSTED="build/tsan/moonvisor /usr/bin/busted" \
	  OPT="-O1 -g $(TSAN)" LINKOPT="$(TSAN)" SPECS="$(TSAN_SPECS)"

# ---- KVM everywhere: the host's /dev/kvm or the nested test VM --------------
# `make test-vm` runs VM_CMD (default: the kvm pass) in spec/vm/testvm's VM, a
# Debian kernel under QEMU TCG whose emulated AMD CPU has SVM, so kvm_amd gives
# it a real /dev/kvm on any x86-64 machine.  The checkout is shared into it
# (build/ included: the host builds first, the VM reuses it).  VM_TIMEOUT
# bounds the run (seconds; on timeout QEMU is killed, exit status 124);
# VM_SMP > 1 gives it more VCPUs (single-threaded TCG); VM_STALL and
# VM_RETRY are testvm's --stall and --retry.  Its initramfs and vmlinux are
# cached in build/vm/.
VM_PACKAGES := qemu-system-x86 linux-image-amd64 busybox-static cpio kmod xz-utils
VM_CMD      ?= MOONVISOR_RESOURCE_CYCLES=2000 make test TEST_BACKENDS=kvm
VM_TIMEOUT  ?= 2400
VM_SMP      ?= 1
VM_MEM      ?= 4G
VM_STALL    ?= 0
VM_RETRY    ?= 0
export VM_CMD

deps-vm: deps
	@$(MAKE) --no-print-directory deps DEBIAN_PACKAGES="$(VM_PACKAGES)"

test-vm: deps-vm deps-afl
	@$(MAKE) --no-print-directory all
	@spec/vm/testvm --timeout $(VM_TIMEOUT) --stall $(VM_STALL) --retry $(VM_RETRY) --smp $(VM_SMP) --mem $(VM_MEM) -- bash -c "$$VM_CMD"

# The SMP specs under ThreadSanitizer on the nested VM's KVM, two VCPUs (the
# build is made here, at the host's speed, not under TCG).
test-tsan-vm: tsan-build deps-vm
	@$(MAKE) --no-print-directory all
	@spec/vm/testvm --timeout $(VM_TIMEOUT) --smp 2 --mem $(VM_MEM) -- make --no-print-directory test-tsan TEST_BACKENDS=kvm

# `make probe-kvm`: exit status 0 when a guest runs on this machine's own
# /dev/kvm (examples/hello.lua on the kvm backend, bounded to 60 s).
probe-kvm: deps
	@$(MAKE) --no-print-directory all
	@if [ ! -e /dev/kvm ]; then echo "probe-kvm: this machine has no /dev/kvm"; exit 1; fi; \
	out=$$(MOONVISOR_BACKEND=kvm timeout 60 $(BUILD)/moonvisor examples/hello.lua 2>&1); \
	if echo "$$out" | grep -q '(backend kvm)'; then echo "probe-kvm: a guest runs on this machine's /dev/kvm"; \
	else echo "probe-kvm: /dev/kvm is here but a guest does not run on it:"; echo "$$out" | tail -3; exit 1; fi

# `make test-kvm`: the kvm pass where KVM is: on this machine's /dev/kvm when
# probe-kvm finds it working and it is no kvm-pvm (see test-linux below),
# otherwise in the test VM.
test-kvm: deps
	@if [ ! -e /sys/module/kvm_pvm ] && $(MAKE) --no-print-directory probe-kvm; then $(MAKE) --no-print-directory test TEST_BACKENDS=kvm; \
	else echo "test-kvm: the kvm pass runs in the nested test VM"; $(MAKE) --no-print-directory test-vm; fi

# ---- differential conformance: soft against KVM (bench/conformance.lua) ----
# `make conformance` runs CONFORMANCE_CASES random CPL3 instruction sequences
# on the kvm and the soft backend from the same state and fails on a
# difference spec/conformance_known.lua does not document, on a documented
# one whose reproducer no longer differs, and on any tester failure (a
# backend error, a hang, an API error).  It needs a working /dev/kvm:
# `make conformance-vm` runs it in spec/vm/testvm's nested VM instead.  The
# seed is the commit's (git rev-parse HEAD) unless CONFORMANCE_SEED is set;
# a finding replays with build/moonvisor bench/conformance.lua --seed S --case I.
# Each case is classified by its first difference (--max-classes 1) and only
# undocumented classes are minimised, which keeps 5,000 cases to about five
# minutes in the nested VM.
CONFORMANCE_CASES ?= 5000
CONFORMANCE_SEED  ?= $(or $(shell git rev-parse HEAD 2>/dev/null),no-commit)
CONFORMANCE_ARGS  ?=
CONFORMANCE_TIMEOUT ?= 1200
CONFORMANCE_CMD = $(BUILD)/moonvisor bench/conformance.lua --cases $(CONFORMANCE_CASES) \
  --seed $(CONFORMANCE_SEED) --minimise new --max-classes 1 $(CONFORMANCE_ARGS)
.PHONY: conformance conformance-vm

conformance: deps
	@$(MAKE) --no-print-directory all
	@if [ ! -e /dev/kvm ]; then echo "conformance: this machine has no /dev/kvm (make conformance-vm runs it in the nested test VM)"; exit 1; fi
	$(CONFORMANCE_CMD)

conformance-vm: deps-vm
	@$(MAKE) --no-print-directory all
	@spec/vm/testvm --timeout $(CONFORMANCE_TIMEOUT) --smp 1 --mem $(VM_MEM) -- $(CONFORMANCE_CMD)

# A representative subset under valgrind memcheck: create/map/trap/enter/
# close, handler errors, the executable.  Any error fails the run.
VALGRIND_SPECS := spec/exit_spec.lua spec/vcpu_spec.lua
test-valgrind: deps
	@$(MAKE) --no-print-directory all
	@command -v valgrind >/dev/null || { echo "valgrind is missing: apt-get install valgrind"; exit 1; }
	@for b in $(TEST_BACKENDS); do \
	  echo "== valgrind, $$b backend"; \
	  MOONVISOR_BACKEND=$$b $(SPEC_ENV) valgrind -q --error-exitcode=99 --leak-check=full \
	    --errors-for-leak-kinds=definite --smc-check=all-non-file \
	    $(BUILD)/moonvisor /usr/bin/busted -o spec/summary.lua $(VALGRIND_SPECS) || exit 1; \
	done

bench: deps deps-afl
	@$(MAKE) --no-print-directory all $(BUILD)/bench/exit
	$(BUILD)/bench/exit $$(test -e /dev/kvm || echo -b soft) $(BENCH_ARGS)
	env $$(test -e /dev/kvm || echo MOONVISOR_BACKEND=soft) $(BUILD)/moonvisor bench/traps.lua
	env $$(test -e /dev/kvm || echo MOONVISOR_BACKEND=soft) $(BUILD)/moonvisor bench/memory.lua
	env $$(test -e /dev/kvm || echo MOONVISOR_BACKEND=soft) $(BUILD)/moonvisor bench/modes.lua
	@if command -v qemu-system-x86_64 >/dev/null; then bench/startup.sh; \
	else echo "startup bench skipped: qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)"; fi
	env $$(test -e /dev/kvm || echo MOONVISOR_BACKEND=soft) $(BUILD)/moonvisor bench/snapshot.lua
	env $$(test -e /dev/kvm || echo MOONVISOR_BACKEND=soft) $(BUILD)/moonvisor bench/fuzz.lua
	env $$(test -e /dev/kvm || echo MOONVISOR_BACKEND=soft) $(BUILD)/moonvisor bench/afl.lua
	bench/counts.sh $(COUNTS_ARGS)   # and the figures that do not drift: instructions and ioctls

# `make bench-counts`: the figures that do not drift (bench/counts.sh):
# instructions per Lua-handled exit and per start (valgrind's callgrind),
# ioctls per exit, per snapshot restore and per fuzz execution (strace).
.PHONY: bench-counts
bench-counts: all
	bench/counts.sh $(COUNTS_ARGS)

$(BUILD)/bench/exit: bench/exit.c $(BIND_OBJ) $(BUILD)/libmoonvisor.a $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LUA_CFLAGS) $(LDFLAGS) -o $@ bench/exit.c $(BIND_OBJ) $(BUILD)/libmoonvisor.a $(EXE_LUA_LIBS) $(LIBS) $(UC_LIBS) -lm -ldl -Wl,-E

clean:
	rm -rf $(BUILD)

# ---- install / uninstall ---------------------------------------------------
# `make install PREFIX=/opt/mv` (default /usr/local; DESTDIR is prepended to
# every path, for staging).  Where the Lua files go follows Debian's lua5.4:
#   Lua library  $(PREFIX)/share/lua/5.4/moonvisor/  (INSTALL_LMOD of lua5.4.pc
#                is /usr/share/lua/5.4; lua5.4's package.path searches both
#                /usr/share/lua/5.4 and /usr/local/share/lua/5.4)
#   C module     $(PREFIX)/lib/<multiarch>/lua/5.4/moonvisor/core.so for
#                PREFIX=/usr (INSTALL_CMOD of lua5.4.pc), otherwise
#                $(PREFIX)/lib/lua/5.4/moonvisor/core.so (lua5.4's package.cpath
#                searches /usr/local/lib/lua/5.4, not a multiarch dir there)
# Each directory can be overridden: make install LUA_CMOD_DIR=... LUA_LMOD_DIR=...
PREFIX       ?= /usr/local
DESTDIR      ?=
INSTALL      ?= install
MULTIARCH    = $(or $(shell $(CC) -print-multiarch 2>/dev/null),x86_64-linux-gnu)
BIN_DIR      = $(PREFIX)/bin
LUA_LMOD_DIR = $(PREFIX)/share/lua/5.4
LUA_CMOD_DIR = $(if $(filter /usr /usr/,$(PREFIX)),$(PREFIX)/lib/$(MULTIARCH)/lua/5.4,$(PREFIX)/lib/lua/5.4)
EXAMPLES_DIR = $(PREFIX)/share/moonvisor/examples
MAN1_DIR     = $(PREFIX)/share/man/man1
LUA_SCRIPTS  := $(shell cd scripts && find moonvisor -name '*.lua' | sort)

.PHONY: install uninstall rock-build rock-install

install: all
	$(INSTALL) -d $(DESTDIR)$(BIN_DIR) $(DESTDIR)$(LUA_CMOD_DIR)/moonvisor $(DESTDIR)$(LUA_LMOD_DIR) \
	  $(DESTDIR)$(EXAMPLES_DIR)/guests $(DESTDIR)$(MAN1_DIR)
	$(INSTALL) -m 755 $(BUILD)/moonvisor $(DESTDIR)$(BIN_DIR)/moonvisor
	$(INSTALL) -m 644 $(BUILD)/lua/moonvisor/core.so $(DESTDIR)$(LUA_CMOD_DIR)/moonvisor/core.so
	$(foreach f,$(LUA_SCRIPTS),$(INSTALL) -m 644 -D scripts/$(f) $(DESTDIR)$(LUA_LMOD_DIR)/$(f) &&) true
	$(INSTALL) -m 644 examples/*.lua examples/*.dict $(DESTDIR)$(EXAMPLES_DIR)/
	$(INSTALL) -m 644 examples/guests/* $(GUESTS) $(DESTDIR)$(EXAMPLES_DIR)/guests/
	$(INSTALL) -m 644 doc/moonvisor.1 $(DESTDIR)$(MAN1_DIR)/moonvisor.1

# Removes what install put there (the moonvisor directories as a whole);
# leaves shared parent directories such as share/lua/5.4 in place.
uninstall:
	rm -f $(DESTDIR)$(BIN_DIR)/moonvisor $(DESTDIR)$(MAN1_DIR)/moonvisor.1
	rm -f $(DESTDIR)$(LUA_CMOD_DIR)/moonvisor/core.so
	-rmdir $(DESTDIR)$(LUA_CMOD_DIR)/moonvisor 2>/dev/null
	rm -rf $(DESTDIR)$(LUA_LMOD_DIR)/moonvisor $(DESTDIR)$(PREFIX)/share/moonvisor

# ---- luarocks (moonvisor-0.1.0-1.rockspec, build.type = "make") -------------
# luarocks runs `make rock-build VAR=...` then `make rock-install VAR=...`.
# Its CFLAGS arrive as ROCK_CFLAGS: a CFLAGS on make's command line would
# replace the project's -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror.  The
# rock is built in its own tree, $(BUILD)/rock, and installs the module only
# (moonvisor.core + the Lua library); the executable and the man page come
# from `make install`.
ROCK_BUILD   := $(BUILD)/rock
ROCK_CFLAGS  ?= $(OPT)
LIBFLAG      ?= -shared
LUA_INCDIR   ?=
UNICORN_INCDIR ?=
UNICORN_LIBDIR ?=
ROCK_INC     = $(strip $(if $(LUA_INCDIR),-I$(LUA_INCDIR)) $(if $(UNICORN_INCDIR),-I$(UNICORN_INCDIR)))
INST_LIBDIR  ?= $(LUA_CMOD_DIR)
INST_LUADIR  ?= $(LUA_LMOD_DIR)

rock-build:
	$(MAKE) --no-print-directory BUILD=$(ROCK_BUILD) OPT="$(ROCK_CFLAGS)" \
	  LINKOPT="$(filter-out -shared,$(LIBFLAG))" \
	  $(if $(ROCK_INC),LUA_CFLAGS="$(ROCK_INC)") \
	  $(if $(UNICORN_LIBDIR),UC_LIBS="-L$(UNICORN_LIBDIR) -lunicorn") \
	  $(ROCK_BUILD)/lua/moonvisor/core.so

rock-install:
	$(INSTALL) -d $(INST_LIBDIR)/moonvisor $(INST_LUADIR)
	$(INSTALL) -m 644 $(ROCK_BUILD)/lua/moonvisor/core.so $(INST_LIBDIR)/moonvisor/core.so
	$(foreach f,$(LUA_SCRIPTS),$(INSTALL) -m 644 -D scripts/$(f) $(INST_LUADIR)/$(f) &&) true

# ---- loader test kernels (spec/load_spec.lua, spec/load_fuzz_spec.lua) -----
# ELF kernels from examples/guests/kernel.c, linked at 1 MiB by kernel.ld:
# ELF32 (-m32), ELF64 (-m64) and a Multiboot ELF kernel (-m32 + multiboot.S).
# Freestanding: no libc, no libgcc, so -m32 needs no multilib package.  The
# a.out-kludge Multiboot kernel, examples/guests/multiboot_aout.asm, is built
# by the build/guests/%.bin rule above.
GUEST_CC      ?= gcc
KERNEL_CFLAGS := -Os -ffreestanding -fno-pic -fno-pie -fno-stack-protector \
  -fno-asynchronous-unwind-tables -fno-builtin -mno-red-zone -nostdlib -static -no-pie \
  -Wl,-T,examples/guests/kernel.ld -Wl,-n -Wl,--build-id=none
KERNEL_DEPS   := examples/guests/kernel.c examples/guests/kernel.ld
ELF_GUESTS    := build/guests/elf32.elf build/guests/elf64.elf build/guests/multiboot.elf

guests: $(ELF_GUESTS)

build/guests/elf32.elf: $(KERNEL_DEPS)
	@mkdir -p $(dir $@)
	$(GUEST_CC) -m32 $(KERNEL_CFLAGS) -o $@ examples/guests/kernel.c

build/guests/elf64.elf: $(KERNEL_DEPS)
	@mkdir -p $(dir $@)
	$(GUEST_CC) -m64 $(KERNEL_CFLAGS) -o $@ examples/guests/kernel.c

build/guests/multiboot.elf: $(KERNEL_DEPS) examples/guests/multiboot.S
	@mkdir -p $(dir $@)
	$(GUEST_CC) -m32 $(KERNEL_CFLAGS) -o $@ examples/guests/multiboot.S examples/guests/kernel.c

# ---- guest experiments (examples/*.lua, spec/examples_spec.lua) ------------
# Freestanding C guests linked at 1 MiB by examples/guests/guest.ld with
# start.S (no libc, no libgcc: -m32 needs no multilib), the real-mode
# interrupts.bin (by the build/guests/%.bin rule above) and the Multiboot
# kernel mbhello.elf.  `make examples` builds them and runs every example
# once, failing on any error.
EXAMPLE_CFLAGS := -O2 -ffreestanding -fno-pic -fno-pie -fno-stack-protector \
  -fno-asynchronous-unwind-tables -fno-builtin -mno-red-zone -mgeneral-regs-only \
  -nostdlib -static -no-pie -Wall -Wextra \
  -Wl,-T,examples/guests/guest.ld -Wl,-n -Wl,--build-id=none -Wl,--no-warn-rwx-segments
EXAMPLE_DEPS   := examples/guests/guest.ld examples/guests/start.S examples/guests/guest.h
EXAMPLE_GUESTS := build/guests/protected.elf build/guests/long.elf build/guests/mmio.elf \
  build/guests/hypercall.elf build/guests/sandbox.elf build/guests/mbhello.elf

guests: $(EXAMPLE_GUESTS)

build/guests/protected.elf: examples/guests/protected.c $(EXAMPLE_DEPS)
	@mkdir -p $(dir $@)
	$(GUEST_CC) -m32 $(EXAMPLE_CFLAGS) -o $@ examples/guests/start.S $<

build/guests/long.elf build/guests/mmio.elf build/guests/hypercall.elf build/guests/sandbox.elf: \
  build/guests/%.elf: examples/guests/%.c $(EXAMPLE_DEPS)
	@mkdir -p $(dir $@)
	$(GUEST_CC) -m64 $(EXAMPLE_CFLAGS) -o $@ examples/guests/start.S $<

build/guests/mbhello.elf: examples/guests/mbhello.S $(KERNEL_DEPS)
	@mkdir -p $(dir $@)
	$(GUEST_CC) -m32 $(KERNEL_CFLAGS) -o $@ $<

# ---- fuzzing (scripts/moonvisor/fuzz.lua, examples/fuzz_parser.lua) ---------
# The example fuzz target: examples/guests/fuzz_target.c with the entry stub
# fuzz_entry.S, -O1, linked at 1 MiB by kernel.ld; and its basic-block starts
# for breakpoint coverage (function symbols, jump/call targets, the
# instruction after each branch), read from objdump -d by blocks.awk.
FUZZ_CFLAGS := -O1 -ffreestanding -fno-pic -fno-pie -fno-stack-protector \
  -fno-asynchronous-unwind-tables -fno-builtin -mno-red-zone -nostdlib -static -no-pie \
  -Wl,-T,examples/guests/kernel.ld -Wl,-n -Wl,--build-id=none
FUZZ_GUESTS := build/guests/fuzz_target.elf build/guests/fuzz_target.blocks

guests: $(FUZZ_GUESTS)

build/guests/fuzz_target.elf: examples/guests/fuzz_target.c examples/guests/fuzz_entry.S examples/guests/kernel.ld
	@mkdir -p $(dir $@)
	$(GUEST_CC) -m64 $(FUZZ_CFLAGS) -o $@ examples/guests/fuzz_entry.S examples/guests/fuzz_target.c

build/guests/fuzz_target.blocks: build/guests/fuzz_target.elf examples/guests/blocks.awk
	objdump -d --no-show-raw-insn $< | awk -f examples/guests/blocks.awk | sort -u > $@

# The experiments find their guests in ../build/guests or, installed, in guests/.
install: install-example-guests
install-example-guests: all
	$(INSTALL) -d $(DESTDIR)$(EXAMPLES_DIR)/guests
	$(INSTALL) -m 644 $(EXAMPLE_GUESTS) $(DESTDIR)$(EXAMPLES_DIR)/guests/

# `make examples`: every example once, on MOONVISOR_BACKEND or else kvm when
# /dev/kvm exists, soft otherwise.  multiboot.lua boots the built mbhello.elf
# with a command line and a module; it must end through port 0xf4 with 0x10
# (exit status 33).
EXAMPLE_SCRIPTS := examples/hello.lua examples/protected.lua examples/long.lua \
  examples/mmio_device.lua examples/hypercall.lua examples/interrupts.lua examples/sandbox.lua
MULTIBOOT_DEMO  := examples/multiboot.lua --timeout 10000 --module examples/guests/mbmodule.txt=greeting \
  build/guests/mbhello.elf hello from make

.PHONY: examples install-example-guests
examples: deps
	@$(MAKE) --no-print-directory all
	@backend=$${MOONVISOR_BACKEND:-$$(test -c /dev/kvm && echo kvm || echo soft)}; \
	for s in $(EXAMPLE_SCRIPTS); do \
	  echo "== $$s ($$backend backend)"; \
	  MOONVISOR_BACKEND=$$backend $(BUILD)/moonvisor $$s || { echo "$$s failed"; exit 1; }; \
	done; \
	echo "== examples/multiboot.lua ($$backend backend)"; status=0; \
	MOONVISOR_BACKEND=$$backend $(BUILD)/moonvisor $(MULTIBOOT_DEMO) || status=$$?; \
	[ $$status -eq 33 ] || { echo "examples/multiboot.lua: exit status $$status, want 33 (0x10 on port 0xf4)"; exit 1; }; \
	echo "== all examples ran"

# ---- Linux boot protocol (scripts/moonvisor/linux.lua, examples/linux.lua) --
# build/guests/bzImage: the protocol test kernel, a bzImage made from
# examples/guests/bzkernel*: bzkernel.c built twice (-m32 as a flat blob at
# 0x120000 by bzkernel32.ld, -m64 with the entry points of bzkernel_head.S,
# which includes the blob, by bzkernel.ld at 1 MiB), flattened, then behind
# the boot sector and setup header of bzkernel.nasm (init_size from _end).
# The sources are flat in examples/guests/ (not a subdirectory) because
# `make install` copies examples/guests/* with install(1), which refuses
# directories.
BZ_CFLAGS := -O2 -ffreestanding -fno-pic -fno-pie -fno-stack-protector \
  -fno-asynchronous-unwind-tables -fno-builtin -mno-red-zone -mgeneral-regs-only \
  -nostdlib -static -no-pie -Wall -Wextra -Iexamples/guests \
  -Wl,-n -Wl,--build-id=none -Wl,--no-warn-rwx-segments
BZ_DEPS := examples/guests/bzkernel.c examples/guests/guest.h

guests: build/guests/bzImage

build/guests/bzkernel32.elf: examples/guests/bzkernel32.ld $(BZ_DEPS)
	@mkdir -p $(dir $@)
	$(GUEST_CC) -m32 $(BZ_CFLAGS) -Wl,-T,examples/guests/bzkernel32.ld -o $@ examples/guests/bzkernel.c

build/guests/bzkernel.elf: build/guests/bzkernel32.bin examples/guests/bzkernel_head.S examples/guests/bzkernel.ld $(BZ_DEPS)
	$(GUEST_CC) -m64 $(BZ_CFLAGS) -Wl,-T,examples/guests/bzkernel.ld -DBZKERNEL32='"$<"' \
	  -o $@ examples/guests/bzkernel_head.S examples/guests/bzkernel.c

build/guests/bzkernel32.bin: build/guests/bzkernel32.elf
	objcopy -O binary $< $@

build/guests/bzkernel.pm: build/guests/bzkernel.elf
	objcopy -O binary $< $@

build/guests/bzImage: examples/guests/bzkernel.nasm build/guests/bzkernel.pm build/guests/bzkernel.elf
	nasm -f bin -DPM_IMAGE='"build/guests/bzkernel.pm"' \
	  -DKERNEL_END=0x$$(nm build/guests/bzkernel.elf | awk '$$3 == "_end" { print $$1 }') -o $@ $<

# `make linux-initramfs`: build/linux/initramfs.cpio.gz, Debian's
# busybox-static and an /init that mounts /proc, /sys and /dev and starts a
# shell on the console (prompt "moonvisor-linux:/# "), or runs
# examples/linux.lua's --run command (examples/mkinitramfs.lua).
# LINUX_KERNEL: Debian's linux-image-amd64 kernel, the newest /boot/vmlinuz-*.
# `make test-linux`: spec/linux_boot_spec.lua (tagged #linux, left out of
# `make test`) boots that kernel with the initramfs to the shell on the kvm
# backend: on this machine's /dev/kvm when a guest runs there (make
# probe-kvm) and it is no kvm-pvm (which emulates all CPL0 code: the
# kernel's decompression alone takes many minutes there), otherwise in the
# nested test VM (LINUX_VM_TIMEOUT bounds it).
LINUX_PACKAGES := busybox-static linux-image-amd64
LINUX_KERNEL ?= $(lastword $(sort $(wildcard /boot/vmlinuz-*)))
LINUX_VM_TIMEOUT ?= 1100
# The nested VM has frozen in the middle of this pass on this project's
# machines (its kernel, clock included, stops, so no spec's own bound fires):
# spec/vm/testvm --stall sees its heartbeat stop, and --retry boots a VM
# that froze (or did not boot) again, up to LINUX_VM_RETRY more times; a
# failing spec is not run again.  There each spec gets a VM of its own
# (LINUX_VM_PARTS: busted --filter patterns, one spec each), so a freeze
# costs one Linux boot, and a retry repeats only that; the parts' counts
# must add up to the specs in spec/linux_boot_spec.lua.
LINUX_VM_STALL ?= 120
LINUX_VM_RETRY ?= 3
LINUX_VM_PARTS := busybox interactive Ctrl%-A piped panic refuses
export LINUX_KERNEL
.PHONY: linux-initramfs deps-linux test-linux test-linux-here
deps-linux: deps
	@$(MAKE) --no-print-directory deps DEBIAN_PACKAGES="$(LINUX_PACKAGES)"

linux-initramfs: deps-linux
	@$(MAKE) --no-print-directory build/linux/initramfs.cpio.gz
build/linux/initramfs.cpio.gz: examples/mkinitramfs.lua /bin/busybox
	@mkdir -p $(dir $@)
	lua5.4 examples/mkinitramfs.lua build/linux/initramfs.cpio /bin/busybox
	gzip -9n <build/linux/initramfs.cpio >$@.tmp && mv $@.tmp $@

test-linux: deps-linux
	@$(MAKE) --no-print-directory all build/linux/initramfs.cpio.gz
	@if [ ! -e /sys/module/kvm_pvm ] && $(MAKE) --no-print-directory probe-kvm; then \
	  $(MAKE) --no-print-directory test-linux-here; \
	else echo "test-linux: booting Linux in the nested test VM, a VM for each spec"; \
	  passed=0; failed=0; i=0; \
	  for part in $(LINUX_VM_PARTS); do \
	    i=$$((i + 1)); log=$(BUILD)/test-linux-part$$i.log; \
	    echo "== test-linux part $$i: the spec matching '$$part'"; \
	    $(MAKE) --no-print-directory test-vm VM_TIMEOUT=$(LINUX_VM_TIMEOUT) VM_STALL=$(LINUX_VM_STALL) \
	      VM_RETRY=$(LINUX_VM_RETRY) VM_CMD="make --no-print-directory test-linux-here LINUX_FILTER='$$part'" \
	      2>&1 | tee $$log; \
	    set -- $$(spec/tally $$log); p=$${1:-}; f=$${2:-}; \
	    if [ -z "$$p" ]; then p=0; f=1; echo "test-linux: part $$i ('$$part') printed no summary: counted as 1 failed"; \
	    elif [ $$((p + f)) -ne 1 ]; then echo "test-linux: part $$i ('$$part') ran $$((p + f)) specs, not 1"; f=$$((f + 1)); fi; \
	    passed=$$((passed + p)); failed=$$((failed + f)); \
	  done; \
	  n=$$(grep -c '^  it(' spec/linux_boot_spec.lua); \
	  if [ $$((passed + failed)) -lt $$n ]; then failed=$$((failed + n - passed - failed)); \
	    echo "test-linux: spec/linux_boot_spec.lua has $$n specs; LINUX_VM_PARTS ran $$((passed + failed)) of them"; fi; \
	  echo "spec: $$passed passed, $$failed failed"; [ $$failed -eq 0 ]; fi

# The Linux specs on this machine's kvm backend (what test-linux runs where KVM is).
test-linux-here:
	@test -n "$(LINUX_KERNEL)" || { echo "test-linux: no /boot/vmlinuz-*: apt-get install linux-image-amd64"; exit 1; }
	@echo "== Linux specs: $(LINUX_KERNEL), build/linux/initramfs.cpio.gz, kvm backend"
	@MOONVISOR_BACKEND=kvm $(SPEC_ENV) $(BUSTED) -o spec/summary.lua --tags=linux $(if $(LINUX_FILTER),--filter='$(LINUX_FILTER)') spec

# The installed examples/linux.lua finds the test kernel in guests/.
install: install-linux-guest
.PHONY: install-linux-guest
install-linux-guest: all
	$(INSTALL) -d $(DESTDIR)$(EXAMPLES_DIR)/guests
	$(INSTALL) -m 644 build/guests/bzImage $(DESTDIR)$(EXAMPLES_DIR)/guests/

# ---- PC test kernels (moonvisor run, spec/pc_*_spec.lua, bench/qemu_compare.sh) --
# examples/guests/pctest.c checks fw_cfg, ACPI, CMOS, PCI and the UART the way
# a kernel for `qemu -kernel` does.  pctest.elf: its Multiboot entry linked
# the ordinary way (ld -Ttext 0x100000, no script: the ELF headers land in a
# loadable segment at 0xff000); pctest_low.elf: the same at 0x8000 (the
# headers at 0x7000); pctest_pvh.elf: its PVH entry (a Xen ELF note).
PC_CFLAGS := -m32 -O2 -ffreestanding -fno-pic -fno-pie -fno-stack-protector -fno-strict-aliasing \
  -fno-asynchronous-unwind-tables -fno-builtin -mno-red-zone -mgeneral-regs-only -Wall -Wextra
PC_GUESTS := build/guests/pctest.elf build/guests/pctest_low.elf build/guests/pctest_pvh.elf

guests: $(PC_GUESTS)

build/guests/pctest.o: examples/guests/pctest.c
	@mkdir -p $(dir $@)
	$(GUEST_CC) $(PC_CFLAGS) -c -o $@ $<

build/guests/pctest_mb.o build/guests/pctest_pvh.o: build/guests/%.o: examples/guests/%.S examples/guests/pctest_entry.inc
	@mkdir -p $(dir $@)
	$(GUEST_CC) -m32 -c -o $@ $<

build/guests/pctest.elf: build/guests/pctest_mb.o build/guests/pctest.o
	ld -m elf_i386 -Ttext 0x100000 -o $@ $^

build/guests/pctest_low.elf: build/guests/pctest_mb.o build/guests/pctest.o
	ld -m elf_i386 -Ttext 0x8000 -o $@ $^

build/guests/pctest_pvh.elf: build/guests/pctest_pvh.o build/guests/pctest.o examples/guests/pctest_pvh.ld
	ld -m elf_i386 -T examples/guests/pctest_pvh.ld -o $@ build/guests/pctest_pvh.o build/guests/pctest.o
