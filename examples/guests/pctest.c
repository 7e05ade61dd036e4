/* pctest.c - a test kernel written the way a kernel for `qemu -kernel` is:
 * it learns about the machine from the boot protocol (Multiboot or PVH,
 * through pctest_mb.S / pctest_pvh.S), from fw_cfg and from the ACPI
 * tables, prints through the 16550 on COM1 polling its LSR, and ends
 * through isa-debug-exit at 0xf4.  One line per check: "ok   <what>" or
 * "FAIL <what>".  freestanding, 32-bit, no libc.
 *
 * Command line words (the Multiboot line starts with the kernel's path):
 *   irq       also take interrupts: the UART's THR-empty interrupt through
 *             the 8259 (IRQ 4) and through the I/O APIC (pin 4; address from
 *             the MADT), and PIT ticks through the I/O APIC (pin from the
 *             MADT's IRQ 0 override, 0 without one).  Needs an interrupt
 *             controller: moonvisor's KVM backend, or QEMU.
 *   poweroff  end with an ACPI soft-off: SLP_TYP from the DSDT's \_S5_
 *             package, SLP_EN, to the FADT's PM1a control block
 *   reset     end with a reset through 0xcf9
 *   halt      end with cli; hlt
 *   fault     end with a triple fault (an int3 with an empty IDT)
 *   spin      never end: loop on pause (for a debugger to attach)
 *   otherwise end through isa-debug-exit: 0x20 when every check passed
 *             (exit status 65), 0x40 + failures otherwise (129 + 2n).
 */
#include <stdint.h>
#include <stddef.h>

#define COM1 0x3f8
#define DEBUG_EXIT 0xf4
#define FW_CFG_SEL 0x510
#define FW_CFG_DATA 0x511
#define FW_CFG_DMA 0x514

static inline void outb(uint16_t p, uint8_t v) { __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(p)); }
static inline void outw(uint16_t p, uint16_t v) { __asm__ volatile("outw %0, %1" : : "a"(v), "Nd"(p)); }
static inline void outl(uint16_t p, uint32_t v) { __asm__ volatile("outl %0, %1" : : "a"(v), "Nd"(p)); }
static inline uint8_t inb(uint16_t p) { uint8_t v; __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(p)); return v; }
static inline uint16_t inw(uint16_t p) { uint16_t v; __asm__ volatile("inw %1, %0" : "=a"(v) : "Nd"(p)); return v; }
static inline uint32_t inl(uint16_t p) { uint32_t v; __asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(p)); return v; }
static inline uint32_t rd32(uintptr_t a) { return *(volatile uint32_t *)a; }
static inline void wr32(uintptr_t a, uint32_t v) { *(volatile uint32_t *)a = v; }

void *memset(void *d, int c, size_t n) { uint8_t *p = d; while (n--) *p++ = (uint8_t)c; return d; }
void *memcpy(void *d, const void *s, size_t n) { uint8_t *p = d; const uint8_t *q = s; while (n--) *p++ = *q++; return d; }
static int mem_eq(const void *a, const void *b, size_t n) {
  const uint8_t *p = a, *q = b;
  while (n--) if (*p++ != *q++) return 0;
  return 1;
}
static size_t str_len(const char *s) { size_t n = 0; while (s[n]) n++; return n; }
static int str_eq(const char *a, const char *b) { while (*a && *a == *b) a++, b++; return *a == *b; }

/* {-------------------------------------------------- the UART, polled */

static void uart_init(void) {
  outb(COM1 + 1, 0x00);   /* IER: no interrupts */
  outb(COM1 + 3, 0x80);   /* LCR: DLAB */
  outb(COM1 + 0, 0x01);   /* 115200 baud */
  outb(COM1 + 1, 0x00);
  outb(COM1 + 3, 0x03);   /* 8N1 */
  outb(COM1 + 2, 0xc7);   /* FIFOs on, cleared, 14-byte trigger */
  outb(COM1 + 4, 0x0b);   /* DTR, RTS, OUT2 */
}

static void putc(char c) {
  if (c == '\n') putc('\r');
  while (!(inb(COM1 + 5) & 0x20)) { }   /* LSR.THRE */
  outb(COM1, (uint8_t)c);
}
static void puts(const char *s) { while (*s) putc(*s++); }
static void put_hex(uint64_t v) {
  char b[19];
  int i = 18;
  b[i] = 0;
  do { b[--i] = "0123456789abcdef"[v & 15]; v >>= 4; } while (v);
  b[--i] = 'x';
  b[--i] = '0';
  puts(b + i);
}
static void put_dec(uint32_t v) {
  char b[11];
  int i = 10;
  b[i] = 0;
  do { b[--i] = (char)('0' + v % 10); v /= 10; } while (v);
  puts(b + i);
}

static int fails;
static void check(int ok, const char *what) {
  puts(ok ? "ok   " : "FAIL ");
  puts(what);
  putc('\n');
  if (!ok) fails++;
}

/* {-------------------------------------------------- boot information */

struct region { uint64_t addr, len; uint32_t type; };
static struct region bmap[64];
static int nbmap;
static const char *cmdline = "";

static void from_multiboot(uint32_t info) {
  uint32_t flags = rd32(info);
  if (flags & (1 << 2)) cmdline = (const char *)(uintptr_t)rd32(info + 16);
  if (flags & (1 << 6)) {
    uint32_t len = rd32(info + 44), at = rd32(info + 48), end = at + len;
    while (at < end && nbmap < 64) {
      uint32_t size = rd32(at);
      bmap[nbmap].addr = *(volatile uint64_t *)(uintptr_t)(at + 4);
      bmap[nbmap].len = *(volatile uint64_t *)(uintptr_t)(at + 12);
      bmap[nbmap].type = rd32(at + 20);
      nbmap++;
      at += size + 4;
    }
  }
}

static void from_pvh(uint32_t si) {
  cmdline = (const char *)(uintptr_t)rd32(si + 24);
  uint32_t map = rd32(si + 40), n = rd32(si + 48);
  for (uint32_t i = 0; i < n && nbmap < 64; i++) {
    uint32_t e = map + 24 * i;
    bmap[nbmap].addr = *(volatile uint64_t *)(uintptr_t)e;
    bmap[nbmap].len = *(volatile uint64_t *)(uintptr_t)(e + 8);
    bmap[nbmap].type = rd32(e + 16);
    nbmap++;
  }
}

/* Is `word` one of the command line's words? */
static int has_word(const char *word) {
  size_t n = str_len(word);
  for (const char *p = cmdline; *p; p++) {
    if ((p == cmdline || p[-1] == ' ') && mem_eq(p, word, n) && (p[n] == ' ' || p[n] == 0)) return 1;
  }
  return 0;
}

/* {-------------------------------------------------- fw_cfg */

static void fw_read(uint16_t key, void *buf, uint32_t n) {
  uint8_t *p = buf;
  outw(FW_CFG_SEL, key);
  while (n--) *p++ = inb(FW_CFG_DATA);
}
static uint32_t fw_u32(uint16_t key) { uint32_t v = 0; fw_read(key, &v, 4); return v; }
static uint16_t fw_u16(uint16_t key) { uint16_t v = 0; fw_read(key, &v, 2); return v; }

static uint32_t bswap32(uint32_t v) { return __builtin_bswap32(v); }

struct dma { uint32_t control, length; uint64_t address; };
static volatile struct dma dma_desc __attribute__((aligned(16)));

/* A DMA transfer described at desc_addr; returns the control word after it. */
static uint32_t fw_dma_at(uint32_t desc_addr) {
  outl(FW_CFG_DMA, 0);
  outl(FW_CFG_DMA + 4, bswap32(desc_addr));
  return bswap32(rd32(desc_addr));
}

static uint32_t fw_dma_read(uint16_t key, void *buf, uint32_t n) {
  dma_desc.control = bswap32(((uint32_t)key << 16) | 0x08 | 0x02);   /* select, read */
  dma_desc.length = bswap32(n);
  dma_desc.address = (uint64_t)bswap32((uint32_t)(uintptr_t)buf) << 32;
  return fw_dma_at((uint32_t)(uintptr_t)&dma_desc);
}

static uint8_t filedir[4 + 64 * 64];
static uint8_t e820buf[64 * 20];

/* The selector and size of a fw_cfg file, 0 when there is none. */
static uint16_t fw_file(const char *name, uint32_t *size) {
  uint32_t count = 0;
  fw_read(0x19, &count, 4);
  count = bswap32(count);
  if (count > 64) count = 64;
  fw_read(0x19, filedir, 4 + 64 * count);
  for (uint32_t i = 0; i < count; i++) {
    uint8_t *f = filedir + 4 + 64 * i;
    if (str_eq((const char *)f + 8, name)) {
      *size = bswap32(*(uint32_t *)f);
      return (uint16_t)((f[4] << 8) | f[5]);
    }
  }
  return 0;
}

static uint32_t ncpus;
static uint64_t ram_size;

static void test_fw_cfg(void) {
  char sig[5] = { 0 };
  fw_read(0x00, sig, 4);
  check(mem_eq(sig, "QEMU", 4), "fw_cfg: signature \"QEMU\" at selector 0");
  uint32_t id = fw_u32(0x01);
  check((id & 1) != 0, "fw_cfg: ID has the traditional interface");
  check((id & 2) != 0, "fw_cfg: ID has DMA");
  check(inl(FW_CFG_DMA) == 0x554d4551 && inl(FW_CFG_DMA + 4) == 0x47464320,
        "fw_cfg: the DMA registers read \"QEMU CFG\"");
  ncpus = fw_u16(0x05);
  puts("     fw_cfg: "); put_dec(ncpus); puts(" CPUs, RAM ");
  fw_read(0x03, &ram_size, 8);
  put_hex(ram_size); putc('\n');
  check(ncpus >= 1, "fw_cfg: CPU count");

  /* RAM size against the boot memory map: RAM below 4 GiB ends at most
   * where RAM_SIZE (or the 3 GiB split) says -- firmware may keep the last
   * bit for itself, QEMU's SeaBIOS does -- and RAM above 4 GiB is the rest. */
  uint64_t low_end = 0, high = 0;
  for (int i = 0; i < nbmap; i++) {
    puts("     map: "); put_hex(bmap[i].addr); putc(' '); put_hex(bmap[i].len); putc(' '); put_dec(bmap[i].type); putc('\n');
    if (bmap[i].type != 1) continue;
    if (bmap[i].addr >= 0x100000000ull) high += bmap[i].len;
    else if (bmap[i].addr + bmap[i].len > low_end) low_end = bmap[i].addr + bmap[i].len;
  }
  check(nbmap > 0 && low_end + high <= ram_size && low_end + high + 0x100000 > ram_size,
        "fw_cfg: RAM size = the boot memory map's RAM (less at most 1 MiB of firmware's)");

  uint32_t size = 0;
  uint16_t sel = fw_file("etc/e820", &size);
  check(sel >= 0x20 && size % 20 == 0 && size > 0, "fw_cfg: etc/e820 is in the file directory");
  if (sel && size <= sizeof e820buf) {
    uint32_t ctl = fw_dma_read(sel, e820buf, size);
    check(ctl == 0, "fw_cfg: DMA read of etc/e820 completes");
    int inside = 1;   /* every RAM range of the boot map is RAM in etc/e820 */
    for (int i = 0; i < nbmap; i++) {
      if (bmap[i].type != 1) continue;
      int found = 0;
      for (uint32_t j = 0; j < size / 20; j++) {
        uint8_t *e = e820buf + 20 * j;
        uint64_t a = *(uint64_t *)e, l = *(uint64_t *)(e + 8);
        if (*(uint32_t *)(e + 16) == 1 && a <= bmap[i].addr && bmap[i].addr + bmap[i].len <= a + l) found = 1;
      }
      if (!found) inside = 0;
    }
    check(inside, "fw_cfg: etc/e820 has RAM wherever the boot memory map has");
  }

  uint32_t clen = fw_u32(0x14);
  static char cbuf[512];
  if (clen == 0) {
    puts("skip fw_cfg: no CMDLINE_SIZE (QEMU gives it for Linux and PVH kernels only)\n");
  } else {
    if (clen > sizeof cbuf) clen = sizeof cbuf;
    fw_read(0x15, cbuf, clen);
    check(clen == str_len(cmdline) + 1 && mem_eq(cbuf, cmdline, clen), "fw_cfg: CMDLINE_DATA is the boot command line");
  }

  /* Nonsense gets what QEMU gives: zeros from an invalid selector, the error
   * bit for a transfer to memory that is not RAM. */
  uint32_t junk = 0x12345678;
  fw_read(0x3fff, &junk, 4);
  check(junk == 0, "fw_cfg: an out-of-range selector reads zeros");
  dma_desc.control = bswap32((0x00u << 16) | 0x08 | 0x02);
  dma_desc.length = bswap32(4);
  dma_desc.address = (uint64_t)bswap32(0xf0000000u) << 32;
  check(fw_dma_at((uint32_t)(uintptr_t)&dma_desc) & 1, "fw_cfg: DMA to an address outside RAM sets the error bit");
}

/* {-------------------------------------------------- ACPI */

static int sum_ok(uintptr_t p, uint32_t n) {
  uint8_t s = 0;
  for (uint32_t i = 0; i < n; i++) s += *(volatile uint8_t *)(p + i);
  return s == 0;
}

static uintptr_t scan_rsdp(uintptr_t lo, uint32_t len) {
  for (uintptr_t p = lo; p + 20 <= lo + len; p += 16)
    if (mem_eq((void *)p, "RSD PTR ", 8) && sum_ok(p, 20)) return p;
  return 0;
}

static uintptr_t madt, fadt, dsdt;
static uint32_t ioapic_addr, lapic_addr, irq0_gsi;
static uint16_t pm_tmr, pm1a_cnt;
static int s5_typ = -1;

static void test_acpi(void) {
  uintptr_t bda = 0x40e;
  __asm__("" : "+r"(bda));   /* a pointer into the first page is not a NULL dereference */
  uintptr_t ebda = (uintptr_t)(*(volatile uint16_t *)bda) << 4;
  uintptr_t rsdp = ebda ? scan_rsdp(ebda, 1024) : 0;
  if (!rsdp) rsdp = scan_rsdp(0xe0000, 0x20000);
  check(rsdp != 0, "acpi: RSDP found (EBDA, then 0xE0000-0xFFFFF)");
  if (!rsdp) return;
  puts("     acpi: RSDP at "); put_hex(rsdp); putc('\n');
  uint8_t rev = *(volatile uint8_t *)(rsdp + 15);
  if (rev >= 2) check(sum_ok(rsdp, 36), "acpi: RSDP extended checksum");
  uintptr_t rsdt = rd32(rsdp + 16);
  check(mem_eq((void *)rsdt, "RSDT", 4) && sum_ok(rsdt, rd32(rsdt + 4)), "acpi: RSDT signature and checksum");
  uint32_t n = (rd32(rsdt + 4) - 36) / 4;
  int all_ok = 1;
  for (uint32_t i = 0; i < n; i++) {
    uintptr_t t = rd32(rsdt + 36 + 4 * i);
    if (!sum_ok(t, rd32(t + 4))) all_ok = 0;
    if (mem_eq((void *)t, "APIC", 4)) madt = t;
    if (mem_eq((void *)t, "FACP", 4)) fadt = t;
  }
  check(all_ok, "acpi: every table the RSDT lists has a good checksum");
  check(madt != 0 && fadt != 0, "acpi: MADT and FADT present");
  if (madt) {
    lapic_addr = rd32(madt + 36);
    uint32_t len = rd32(madt + 4), cpus = 0;
    irq0_gsi = 0;
    for (uintptr_t e = madt + 44; e + 2 <= madt + len; e += *(volatile uint8_t *)(e + 1)) {
      uint8_t type = *(volatile uint8_t *)e, elen = *(volatile uint8_t *)(e + 1);
      if (elen < 2) break;
      if (type == 0 && (rd32(e + 4) & 1)) cpus++;
      if (type == 1) ioapic_addr = rd32(e + 4);
      if (type == 2 && *(volatile uint8_t *)(e + 3) == 0) irq0_gsi = rd32(e + 4);
    }
    puts("     acpi: MADT lists "); put_dec(cpus); puts(" local APICs, I/O APIC at "); put_hex(ioapic_addr); putc('\n');
    check(cpus == ncpus, "acpi: one enabled local APIC per CPU fw_cfg counts");
    check(ioapic_addr != 0 && lapic_addr == 0xfee00000, "acpi: I/O APIC and local APIC addresses");
  }
  if (fadt) {
    pm1a_cnt = (uint16_t)rd32(fadt + 64);
    pm_tmr = (uint16_t)rd32(fadt + 76);
    dsdt = rd32(fadt + 40);
    check(dsdt && mem_eq((void *)dsdt, "DSDT", 4) && sum_ok(dsdt, rd32(dsdt + 4)), "acpi: DSDT signature and checksum");
    if (dsdt) {   /* Name(_S5_, Package(){ typ, ... }): the first element */
      uint32_t len = rd32(dsdt + 4);
      for (uintptr_t p = dsdt + 36; p + 8 < dsdt + len; p++) {
        if (mem_eq((void *)p, "_S5_\x12", 5)) {
          uint8_t *q = (uint8_t *)p + 7;   /* past PkgLength (1 byte) and NumElements */
          s5_typ = *q == 0x0a ? q[1] : (*q == 0x01 ? 1 : 0);
        }
      }
    }
    check(s5_typ >= 0, "acpi: \\_S5_ in the DSDT");
    uint32_t t1 = inl(pm_tmr) & 0xffffff;
    for (volatile int i = 0; i < 20000; i++) { }
    uint32_t t2 = inl(pm_tmr) & 0xffffff;
    check(pm_tmr && t1 != t2, "acpi: the PM timer counts");
    /* ACPI mode: with an SMI command port, ask firmware for it (QEMU);
     * without one the machine is in ACPI mode from reset (moonvisor). */
    uint32_t smi_cmd = rd32(fadt + 48);
    uint8_t enable = *(volatile uint8_t *)(fadt + 52);
    if (smi_cmd && enable && !(inw(pm1a_cnt) & 1)) {
      outb((uint16_t)smi_cmd, enable);
      for (int i = 0; i < 100000 && !(inw(pm1a_cnt) & 1); i++) { }
    }
    check((inw(pm1a_cnt) & 1) == 1, "acpi: in ACPI mode (PM1a control reads SCI_EN)");
  }
}

/* {-------------------------------------------------- CMOS, PCI, UART */

static uint8_t cmos(uint8_t i) { outb(0x70, i); return inb(0x71); }

static void test_devices(void) {
  uint64_t below = ram_size >= 0xe0000000ull ? 0xc0000000ull : ram_size;
  uint32_t want = below > 0x1000000 ? (uint32_t)((below - 0x1000000) >> 16) : 0;
  if (want > 0xffff) want = 0xffff;
  check((uint32_t)(cmos(0x34) | cmos(0x35) << 8) == want, "cmos: RAM above 16 MiB at 0x34/0x35");
  check(cmos(0x5f) == ncpus - 1, "cmos: CPU count - 1 at 0x5f");
  outl(0xcf8, 0x80000000);
  check(inl(0xcfc) == 0x12378086, "pci: 00:00.0 is an i440FX host bridge (8086:1237)");
  outl(0xcf8, 0x8000f800);
  check(inl(0xcfc) == 0xffffffff, "pci: an empty slot (00:1f.0) reads all-ones");
  check((inb(COM1 + 5) & 0x60) == 0x60, "uart: LSR shows THR empty and transmitter empty");
  outb(COM1 + 7, 0x5a);
  check(inb(COM1 + 7) == 0x5a, "uart: scratch register");
  check((inb(COM1 + 2) & 0xc1) == 0xc1, "uart: IIR: FIFOs on, no interrupt pending");
}

/* {-------------------------------------------------- interrupts */

struct idt_entry { uint16_t lo, sel; uint8_t zero, flags; uint16_t hi; } __attribute__((packed));
static struct idt_entry idt[256];
static volatile uint32_t hits_pic, hits_ioapic, ticks;

struct frame;
__attribute__((interrupt)) static void isr_pic(struct frame *f) {
  (void)f;
  (void)inb(COM1 + 2);       /* IIR: reading it clears THR empty */
  outb(COM1 + 1, 0);         /* no more */
  hits_pic++;
  outb(0x20, 0x20);          /* 8259 EOI */
}
__attribute__((interrupt)) static void isr_ioapic(struct frame *f) {
  (void)f;
  (void)inb(COM1 + 2);
  outb(COM1 + 1, 0);
  hits_ioapic++;
  wr32(lapic_addr + 0xb0, 0); /* local APIC EOI */
}
__attribute__((interrupt)) static void isr_tick(struct frame *f) {
  (void)f;
  ticks++;
  wr32(lapic_addr + 0xb0, 0);
}
__attribute__((interrupt)) static void isr_spurious(struct frame *f) { (void)f; }

static void set_gate(int v, void (*fn)(struct frame *)) {
  uint32_t a = (uint32_t)(uintptr_t)fn;
  uint16_t cs;
  __asm__ volatile("mov %%cs, %0" : "=r"(cs));
  idt[v].lo = a & 0xffff;
  idt[v].hi = a >> 16;
  idt[v].sel = cs;
  idt[v].zero = 0;
  idt[v].flags = 0x8e;
}

static void ioapic_route(uint32_t pin, uint32_t low) {
  wr32(ioapic_addr, 0x10 + 2 * pin + 1);
  wr32(ioapic_addr + 0x10, 0);               /* destination: APIC ID 0 */
  wr32(ioapic_addr, 0x10 + 2 * pin);
  wr32(ioapic_addr + 0x10, low);
}

/* Waits (hlt with interrupts on) until *what reaches n, at most `tries` wakes. */
static int wait_for(volatile uint32_t *what, uint32_t n, int tries) {
  while (*what < n && tries-- > 0) __asm__ volatile("sti; hlt; cli");
  return *what >= n;
}

static void test_irq(void) {
  struct { uint16_t limit; uint32_t base; } __attribute__((packed)) idtr = { sizeof idt - 1, (uint32_t)(uintptr_t)idt };
  set_gate(0x24, isr_pic);
  set_gate(0x34, isr_ioapic);
  set_gate(0x30, isr_tick);
  set_gate(0xff, isr_spurious);
  set_gate(0x27, isr_spurious);
  __asm__ volatile("lidt %0" : : "m"(idtr));

  /* 8259s: vectors 0x20/0x28, only IRQ 4 unmasked. */
  outb(0x20, 0x11); outb(0xa0, 0x11);
  outb(0x21, 0x20); outb(0xa1, 0x28);
  outb(0x21, 0x04); outb(0xa1, 0x02);
  outb(0x21, 0x01); outb(0xa1, 0x01);
  outb(0x21, 0xef); outb(0xa1, 0xff);
  outb(COM1 + 1, 0x02);                      /* IER: THR empty: pending at once */
  check(wait_for(&hits_pic, 1, 100), "irq: UART THR-empty interrupt through the 8259 (IRQ 4)");

  outb(0x21, 0xff);                          /* 8259s off; the I/O APIC from now */
  ioapic_route(4, 0x34);
  outb(COM1 + 1, 0x02);
  check(wait_for(&hits_ioapic, 1, 100), "irq: UART THR-empty interrupt through the I/O APIC (pin 4)");
  ioapic_route(4, 0x10000);                  /* masked */

  ioapic_route(irq0_gsi, 0x30);
  outb(0x43, 0x34);                          /* PIT channel 0, rate generator */
  outb(0x40, 11932 & 0xff); outb(0x40, 11932 >> 8);   /* 100 Hz */
  check(wait_for(&ticks, 3, 1000), "irq: PIT ticks through the I/O APIC pin the MADT gives IRQ 0");
  ioapic_route(irq0_gsi, 0x10000);
  outb(0x43, 0x30);                          /* channel 0 one-shot, stopped */
  puts("     irq: "); put_dec(hits_pic); puts(" 8259, "); put_dec(hits_ioapic); puts(" I/O APIC, ");
  put_dec(ticks); puts(" PIT interrupts\n");
}

/* {-------------------------------------------------- the end */

void kmain(uint32_t magic, uint32_t info, uint32_t protocol) {
  uart_init();
  if (protocol == 0 && magic == 0x2badb002) from_multiboot(info);
  else if (protocol == 1 && rd32(info) == 0x336ec578) from_pvh(info);
  puts("pctest: booted by ");
  puts(protocol == 0 ? "Multiboot" : "PVH");
  puts(", kernel at "); put_hex((uint32_t)(uintptr_t)kmain); puts(", command line: ");
  puts(cmdline);
  putc('\n');
  check(nbmap > 0, "boot: a memory map");
  test_fw_cfg();
  test_acpi();
  test_devices();
  if (has_word("irq")) test_irq();
  puts(fails ? "pctest: " : "pctest: all checks passed");
  if (fails) { put_dec((uint32_t)fails); puts(" checks failed"); }
  putc('\n');

  if (has_word("poweroff") && pm1a_cnt && s5_typ >= 0) {
    outw(pm1a_cnt, (uint16_t)((s5_typ << 10) | (1 << 13)));
  } else if (has_word("reset")) {
    outb(0xcf9, 0x06);
  } else if (has_word("fault")) {
    struct { uint16_t limit; uint32_t base; } __attribute__((packed)) none = { 0, 0 };
    __asm__ volatile("lidt %0; int3" : : "m"(none));
  } else if (has_word("spin")) {
    for (;;) __asm__ volatile("pause");
  } else if (!has_word("halt")) {
    outb(DEBUG_EXIT, (uint8_t)(fails ? 0x40 + (fails > 31 ? 31 : fails) : 0x20));
  }
  for (;;) __asm__ volatile("cli; hlt");
}
