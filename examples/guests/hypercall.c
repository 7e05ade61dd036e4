/*
 * hypercall.c - the guest of examples/hypercall.lua: 64-bit C calling host
 * functions written in Lua, Hyperlight style.  The ABI: function number in
 * RAX, arguments in RDI, RSI, RDX, then a 32-bit OUT to port 0x88 (an
 * immediate port, so DX stays free for the third argument); the host's
 * result comes back in RAX.  Everything the guest prints goes through
 * host_print: this guest has no device at all.
 */
#define HC_PORT 0x88
enum { HC_PRINT = 1, HC_MUL_ADD = 2, HC_GET_GREETING = 3, HC_FIB = 4, HC_NOPE = 99 };

static long hypercall(long nr, long a, long b, long c) {
  __asm__ volatile("outl %%eax, %1" : "+a"(nr) : "i"(HC_PORT), "D"(a), "S"(b), "d"(c) : "memory");
  return nr;
}

static unsigned long len(const char *s) { unsigned long n = 0; while (s[n]) n++; return n; }
static long print(const char *s) { return hypercall(HC_PRINT, (long)s, (long)len(s), 0); }

static char *fmt_long(char *out, long v) {   /* decimal, NUL-terminated; returns the end */
  char tmp[24];
  int i = 0;
  unsigned long u = v < 0 ? -(unsigned long)v : (unsigned long)v;
  do { tmp[i++] = (char)('0' + u % 10); u /= 10; } while (u);
  if (v < 0) *out++ = '-';
  while (i) *out++ = tmp[--i];
  *out = 0;
  return out;
}

static char *cat(char *out, const char *s) { while (*s) *out++ = *s++; *out = 0; return out; }

int main(void) {
  char line[128], greeting[64];
  print("hello from a 64-bit guest, through host_print\n");

  long r = hypercall(HC_MUL_ADD, 6, 7, 0);
  char *p = cat(line, "host_mul_add(6, 7, 0) = ");
  p = fmt_long(p, r);
  cat(p, "\n");
  print(line);

  long n = hypercall(HC_GET_GREETING, (long)greeting, sizeof greeting, 0);
  p = cat(line, "host_get_greeting wrote ");
  p = fmt_long(p, n);
  p = cat(p, " bytes: ");
  p = cat(p, greeting);
  cat(p, "\n");
  print(line);

  p = cat(line, "host_fib(0..10) =");
  for (long i = 0; i <= 10; i++) { p = cat(p, " "); p = fmt_long(p, hypercall(HC_FIB, i, 0, 0)); }
  cat(p, "\n");
  print(line);

  p = cat(line, "unknown function 99 returns ");
  p = fmt_long(p, hypercall(HC_NOPE, 1, 2, 3));
  cat(p, "\n");
  print(line);
  return 0;
}
