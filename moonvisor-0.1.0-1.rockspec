rockspec_format = "3.0"
package = "moonvisor"
version = "0.1.0-1"
source = {
   url = "git+file:///work/main",   -- local checkout; `luarocks make` builds the tree it runs in
}
description = {
   summary = "A scriptable hypervisor runtime: Lua 5.4 on Linux KVM",
   detailed = [[
Guests, memory objects, VCPUs and traps as Lua objects; trap handlers and
device models are Lua functions called on each VM exit.  The API follows
Fuchsia Zircon's hypervisor calls.  Runs on /dev/kvm, or on the Unicorn CPU
emulator (MOONVISOR_BACKEND=soft) where KVM is not available.
This rock installs the module (require "moonvisor"); `make install` also
installs the moonvisor executable, the examples and the man page.
]],
   labels = { "hypervisor", "kvm", "virtualization" },
   license = "MIT",
}
supported_platforms = { "linux" }
dependencies = {
   "lua >= 5.4, < 5.5",
}
external_dependencies = {
   UNICORN = {
      header = "unicorn/unicorn.h",
      library = "unicorn",
   },
}
build = {
   type = "make",
   -- The Makefile's rock-build target builds moonvisor.core (core/*.c and
   -- bindings/*.c except main.c, linked with -lunicorn -lpthread) in
   -- build/rock; rock-install copies it and scripts/moonvisor/**.lua.
   -- CFLAGS travel as ROCK_CFLAGS so that the project's own -std=c11
   -- -D_GNU_SOURCE -Wall -Wextra -Werror stay in force.
   build_target = "rock-build",
   build_variables = {
      ROCK_CFLAGS = "$(CFLAGS)",
      LIBFLAG = "$(LIBFLAG)",
      LUA_INCDIR = "$(LUA_INCDIR)",
      LUA_LIBDIR = "$(LUA_LIBDIR)",
      UNICORN_INCDIR = "$(UNICORN_INCDIR)",
      UNICORN_LIBDIR = "$(UNICORN_LIBDIR)",
   },
   install_target = "rock-install",
   install_variables = {
      INST_PREFIX = "$(PREFIX)",
      INST_LIBDIR = "$(LIBDIR)",
      INST_LUADIR = "$(LUADIR)",
      INST_BINDIR = "$(BINDIR)",
   },
   copy_directories = { "doc" },
}
