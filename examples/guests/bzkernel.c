/*
 * bzkernel.c - the protocol test kernel: what a Linux kernel relies on when a
 * boot loader enters it through the 32- or 64-bit boot protocol
 * (Documentation/arch/x86/boot.rst, zero-page.rst), checked one item at a
 * time and reported as one line each on COM1 (polled: the soft backend
 * cannot deliver interrupts outside real mode, so there is no interrupt-driven
 * output here), then a summary and a power-off: port 0xf4 (isa-debug-exit)
 * with 0 when every check passed, 1 otherwise; if nothing ends the run
 * there, the i8042 reset (0xFE to port 0x64); then halt.
 *
 * Line format: "ok   <item>: <details>" or "FAIL <item>: <details>", and
 * "info <item>: ..." for values that are only shown.
 *
 * Built twice by the Makefile: -m64 for the 64-bit entry (with
 * bzkernel_head.S, linked by bzkernel.ld) and -m32 for the 32-bit entry
 * (bzkernel32.ld, a blob bzkernel_head.S includes); both become
 * build/guests/bzImage.  kmain gets boot_params (RSI/ESI at entry) and what
 * the entry code recorded.
 */
#include "guest.h"

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long long u64;
typedef unsigned long uptr;     /* pointer-sized */

/* The boot_params fields used here, by offset (zero-page.rst). */
#define BP_EXT_RAMDISK_IMAGE 0x0c0
#define BP_EXT_RAMDISK_SIZE  0x0c4
#define BP_EXT_CMD_LINE_PTR  0x0c8
#define BP_E820_ENTRIES      0x1e8
#define BP_HDR               0x1f1
#define BP_E820_TABLE        0x2d0
#define E820_MAX             128

/* The setup header as it is at 0x1f1 (boot.rst). */
struct setup_header {
  u8 setup_sects; u16 root_flags; u32 syssize; u16 ram_size; u16 vid_mode; u16 root_dev;
  u16 boot_flag; u16 jump; u32 header; u16 version; u32 realmode_swtch; u16 start_sys_seg;
  u16 kernel_version; u8 type_of_loader; u8 loadflags; u16 setup_move_size; u32 code32_start;
  u32 ramdisk_image; u32 ramdisk_size; u32 bootsect_kludge; u16 heap_end_ptr; u8 ext_loader_ver;
  u8 ext_loader_type; u32 cmd_line_ptr; u32 initrd_addr_max; u32 kernel_alignment;
  u8 relocatable_kernel; u8 min_alignment; u16 xloadflags; u32 cmdline_size; u32 hardware_subarch;
  u64 hardware_subarch_data; u32 payload_offset; u32 payload_length; u64 setup_data;
  u64 pref_address; u32 init_size; u32 handover_offset; u32 kernel_info_offset;
} __attribute__((packed));

struct e820_entry { u64 addr; u64 size; u32 type; } __attribute__((packed));

#define LOADED_HIGH  0x01
#define CAN_USE_HEAP 0x80

/* Recorded by bzkernel_head.S at entry (the ES_* offsets there). */
struct entry_state {
  u64 rsi, cr0, rflags;
  u64 where;       /* where startup_64 is in memory */
  u64 linked;      /* where it was linked (pref_address + 0x200) */
  u64 size;        /* the image with .bss: what init_size covers */
  u16 cs, ds, es, ss;
  u32 bits;        /* 32 or 64: the entry point taken */
  u32 pad;
};

#define P(a) ((const u8 *)(uptr)(a))

static int checks, failed;

static void check(int ok, const char *item) {
  checks++;
  if (!ok) failed++;
  puts(ok ? "ok   " : "FAIL ");
  puts(item);
  puts(": ");
}
static void info(const char *item) { puts("info "); puts(item); puts(": "); }
static void nl(void) { putc('\n'); }

static u64 rdmsr(u32 msr) {
  u32 lo, hi;
  __asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(msr));
  return ((u64)hi << 32) | lo;
}
static uptr read_cr0(void) { uptr v; __asm__ volatile("mov %%cr0, %0" : "=r"(v)); return v; }
static uptr read_cr4(void) { uptr v; __asm__ volatile("mov %%cr4, %0" : "=r"(v)); return v; }

/* 64-bit values in hex with shifts only (a -m32 build has no libgcc). */
static void hex64(u64 v, int digits) {
  puts("0x");
  for (int i = digits - 1; i >= 0; i--) putc("0123456789abcdef"[(v >> (4 * i)) & 0xf]);
}

/* FNV-1a, 32 bits: the initrd checksum (the spec computes the same in Lua). */
static u32 fnv1a(const u8 *p, u64 n) {
  u32 h = 0x811c9dc5u;
  for (u64 i = 0; i < n; i++) { h ^= p[i]; h *= 0x01000193u; }
  return h;
}

static void show_bytes(const u8 *p, u64 n) {
  putc('"');
  for (u64 i = 0; i < n; i++) {
    u8 c = p[i];
    if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') putc((char)c);
    else { puts("\\x"); putc("0123456789abcdef"[c >> 4]); putc("0123456789abcdef"[c & 15]); }
  }
  putc('"');
}

__attribute__((section(".text.kmain"), used))
void kmain(u8 *bp, struct entry_state *st) {
  serial_init();
  puts("bzkernel: entered through the ");
  putu(st->bits);
  puts("-bit boot protocol\n");

  /* Where we run: the loader put the kernel at pref_address. */
  check(st->where == st->linked, "load address");
  puts("startup_64 at "); hex64(st->where, 8); puts(", linked at "); hex64(st->linked, 8); nl();

  /* boot_params at RSI/ESI. */
  check(bp != 0 && ((uptr)bp & 0xfff) == 0 && (uptr)bp == st->rsi, "boot_params");
  puts("at "); hex64((uptr)bp, 8); nl();
  if (!bp) goto done;
  struct setup_header *h = (struct setup_header *)(bp + BP_HDR);
  check(h->header == 0x53726448u && h->boot_flag == 0xaa55, "setup header");
  puts("magic "); show_bytes((u8 *)&h->header, 4); puts(", boot_flag "); hex64(h->boot_flag, 4);
  puts(", version "); hex64(h->version, 4); nl();
  check(h->type_of_loader != 0, "type_of_loader");
  hex64(h->type_of_loader, 2); nl();
  check((h->loadflags & LOADED_HIGH) != 0, "loadflags");
  hex64(h->loadflags, 2);
  puts((h->loadflags & CAN_USE_HEAP) ? " (LOADED_HIGH, CAN_USE_HEAP), heap_end_ptr " : " (LOADED_HIGH), heap_end_ptr ");
  hex64(h->heap_end_ptr, 4); nl();

  /* The command line. */
  u64 cmd = h->cmd_line_ptr | ((u64)*(u32 *)(bp + BP_EXT_CMD_LINE_PTR) << 32);
  u64 len = 0;
  if (cmd) { const char *s = (const char *)(uptr)cmd; while (len <= h->cmdline_size && s[len]) len++; }
  check(cmd != 0 && len <= h->cmdline_size, "cmdline");
  puts("at "); hex64(cmd, 8); puts(", "); putu(len); puts(" bytes: ");
  if (cmd) show_bytes(P(cmd), len);
  nl();

  /* The initrd. */
  u64 rd = h->ramdisk_image | ((u64)*(u32 *)(bp + BP_EXT_RAMDISK_IMAGE) << 32);
  u64 rdsize = h->ramdisk_size | ((u64)*(u32 *)(bp + BP_EXT_RAMDISK_SIZE) << 32);
  if (rdsize == 0) {
    info("initrd"); puts("none\n");
  } else {
    check(rd != 0 && (rd & 0xfff) == 0 && rd + rdsize - 1 <= h->initrd_addr_max, "initrd");
    puts("at "); hex64(rd, 8); puts(", "); putu(rdsize); puts(" bytes, first bytes ");
    show_bytes(P(rd), rdsize < 16 ? rdsize : 16);
    puts(", fnv1a "); hex64(fnv1a(P(rd), rdsize), 8); nl();
  }

  /* The memory map. */
  u32 n = bp[BP_E820_ENTRIES];
  struct e820_entry *e = (struct e820_entry *)(bp + BP_E820_TABLE);
  check(n > 0 && n <= E820_MAX, "e820");
  putu(n); puts(" entries\n");
  int ram_at_1m = 0, kernel_in_ram = 0;
  u64 kstart = st->where - 0x200, kend = kstart + st->size;
  for (u32 i = 0; i < n && i < E820_MAX; i++) {
    info("e820"); hex64(e[i].addr, 9); puts("-"); hex64(e[i].addr + e[i].size - 1, 9);
    puts(" type "); putu(e[i].type); nl();
    if (e[i].type == 1 && e[i].addr <= 0x100000 && e[i].addr + e[i].size > 0x100000) ram_at_1m = 1;
    if (e[i].type == 1 && e[i].addr <= kstart && e[i].addr + e[i].size >= kend) kernel_in_ram = 1;
  }
  check(ram_at_1m, "e820 RAM at 1 MiB"); puts(ram_at_1m ? "yes\n" : "no\n");
  check(kernel_in_ram, "e820 kernel in RAM");
  hex64(kstart, 8); puts("-"); hex64(kend - 1, 8); nl();

  /* The CPU as the loader left it. */
  uptr cr0 = read_cr0(), cr4 = read_cr4();
  u64 efer = rdmsr(0xc0000080u);
  if (st->bits == 32) {
    int pm = (cr0 & 1) && !(cr0 & 0x80000000u) && !(efer & (1 << 10));
    check(pm, "protected mode");
    puts("CR0.PE "); putu(cr0 & 1); puts(", CR0.PG "); putu((cr0 >> 31) & 1);
    puts(", EFER.LMA "); putu((efer >> 10) & 1); puts(" (cr0 "); hex64(cr0, 8); puts(")\n");
  } else {
    int lm = (efer & (1 << 10)) && (cr0 & 0x80000000u) && (cr0 & 1) && (cr4 & 0x20);
    check(lm, "long mode");
    puts("EFER.LMA "); putu((efer >> 10) & 1); puts(", CR0.PG "); putu((cr0 >> 31) & 1);
    puts(", CR0.PE "); putu(cr0 & 1); puts(", CR4.PAE "); putu((cr4 >> 5) & 1); nl();
  }
  check(st->cs == 0x10 && st->ds == 0x18 && st->es == 0x18 && st->ss == 0x18, "segments");
  puts("cs "); hex64(st->cs, 2); puts(", ds "); hex64(st->ds, 2); puts(", es "); hex64(st->es, 2);
  puts(", ss "); hex64(st->ss, 2); nl();
  check(!(st->rflags & 0x200), "interrupts");
  puts((st->rflags & 0x200) ? "on" : "off"); puts(" at entry (rflags "); hex64(st->rflags, 8); puts(")\n");

done:
  puts("bzkernel: "); putu(checks); puts(" checks, "); putu(failed); puts(" failed\n");
  outb(0xf4, failed ? 1 : 0);     /* isa-debug-exit */
  outb(0x64, 0xfe);               /* i8042: pulse the reset line */
  for (;;) halt();
}
