/*
 * ucapi.h - the Unicorn functions the soft backend uses, reached through a
 * table filled by dlopen on first use.  Linking libunicorn directly cost every
 * moonvisor start ~20 ms of relocations, KVM users included; now only a
 * process that creates a soft guest pays, once.
 */
#ifndef MV_UCAPI_H
#define MV_UCAPI_H

#include <unicorn/unicorn.h>
#include "../internal.h"

typedef struct mv_uc_api {
  uc_err (*open)(uc_arch, uc_mode, uc_engine **);
  uc_err (*close)(uc_engine *);
  const char *(*strerror)(uc_err);
  uc_err (*mem_map_ptr)(uc_engine *, uint64_t, size_t, uint32_t, void *);
  uc_err (*mem_unmap)(uc_engine *, uint64_t, size_t);
  uc_err (*mem_read)(uc_engine *, uint64_t, void *, size_t);
  uc_err (*mem_write)(uc_engine *, uint64_t, const void *, size_t);
  uc_err (*mem_protect)(uc_engine *, uint64_t, size_t, uint32_t);
  uc_err (*mmio_map)(uc_engine *, uint64_t, size_t, uc_cb_mmio_read_t, void *, uc_cb_mmio_write_t, void *);
  uc_err (*hook_add)(uc_engine *, uc_hook *, int, void *, void *, uint64_t, uint64_t, ...);
  uc_err (*emu_start)(uc_engine *, uint64_t, uint64_t, uint64_t, size_t);
  uc_err (*emu_stop)(uc_engine *);
  uc_err (*reg_read)(uc_engine *, int, void *);
  uc_err (*reg_write)(uc_engine *, int, const void *);
  uc_err (*context_alloc)(uc_engine *, uc_context **);
  uc_err (*context_save)(uc_engine *, uc_context *);
  uc_err (*context_restore)(uc_engine *, uc_context *);
  uc_err (*context_free)(uc_context *);
  size_t (*context_size)(uc_engine *);
  uc_err (*context_reg_write)(uc_context *, int, const void *);
  uc_err (*ctl)(uc_engine *, uc_control_type, ...);
} mv_uc_api;

extern mv_uc_api mv__uc;

/* Loads libunicorn once; 0, or -ENOENT with a message saying what to install. */
int mv__uc_load(mv_err *err);

#define uc_open (mv__uc.open)
#define uc_close (mv__uc.close)
#define uc_strerror (mv__uc.strerror)
#define uc_mem_map_ptr (mv__uc.mem_map_ptr)
#define uc_mem_unmap (mv__uc.mem_unmap)
#define uc_mem_read (mv__uc.mem_read)
#define uc_mem_write (mv__uc.mem_write)
#define uc_mem_protect (mv__uc.mem_protect)
#define uc_mmio_map (mv__uc.mmio_map)
#define uc_hook_add (mv__uc.hook_add)
#define uc_emu_start (mv__uc.emu_start)
#define uc_emu_stop (mv__uc.emu_stop)
#define uc_reg_read (mv__uc.reg_read)
#define uc_reg_write (mv__uc.reg_write)
#define uc_context_alloc (mv__uc.context_alloc)
#define uc_context_save (mv__uc.context_save)
#define uc_context_restore (mv__uc.context_restore)
#define uc_context_free (mv__uc.context_free)
#define uc_context_size (mv__uc.context_size)
#define uc_context_reg_write (mv__uc.context_reg_write)
#define uc_ctl (mv__uc.ctl)

#endif
