/*
 * ucapi.c - loads libunicorn with dlopen the first time a soft guest is
 * created and fills the function table of ucapi.h.
 */
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include "ucapi.h"

mv_uc_api mv__uc;   /* filled once, then only read */

static pthread_once_t once = PTHREAD_ONCE_INIT;
static char load_error[200];

static void load(void) {
  void *lib = dlopen("libunicorn.so.2", RTLD_NOW | RTLD_LOCAL);
  if (!lib) lib = dlopen("libunicorn.so", RTLD_NOW | RTLD_LOCAL);
  if (!lib) {
    snprintf(load_error, sizeof load_error, "%s", dlerror());
    return;
  }
  struct { void **slot; const char *name; } syms[] = {
#define SYM(f) { (void **)&mv__uc.f, "uc_" #f }
    SYM(open), SYM(close), SYM(strerror), SYM(mem_map_ptr), SYM(mem_unmap), SYM(mem_read),
    SYM(mem_write), SYM(mem_protect), SYM(mmio_map), SYM(hook_add), SYM(emu_start), SYM(emu_stop),
    SYM(reg_read), SYM(reg_write), SYM(context_alloc), SYM(context_save), SYM(context_restore),
    SYM(context_free), SYM(context_size), SYM(context_reg_write), SYM(ctl),
#undef SYM
  };
  for (size_t i = 0; i < sizeof syms / sizeof syms[0]; i++) {
    *syms[i].slot = dlsym(lib, syms[i].name);
    if (!*syms[i].slot) {
      snprintf(load_error, sizeof load_error, "libunicorn has no %s (version 2 is needed)", syms[i].name);
      memset(&mv__uc, 0, sizeof mv__uc);
      return;
    }
  }
}

int mv__uc_load(mv_err *err) {
  pthread_once(&once, load);
  if (mv__uc.open) return 0;
  return mv__fail(err, -ENOENT, "guest: the soft backend needs libunicorn 2 (Debian: apt-get install libunicorn2): %s",
                  load_error);
}
