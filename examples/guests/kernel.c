/*
 * kernel.c - a tiny freestanding test kernel for the loaders
 * (scripts/moonvisor/load.lua, spec/load_spec.lua).  The Makefile builds it
 * three times with kernel.ld (linked at 1 MiB):
 *   build/guests/elf32.elf      gcc -m32  (ELF32, EM_386)
 *   build/guests/elf64.elf      gcc -m64  (ELF64, EM_X86_64)
 *   build/guests/multiboot.elf  gcc -m32 with multiboot.S (Multiboot v1 header)
 * What the specs look for: the symbols _start, kmain, data_word and bss_buf;
 * data_word's initial value 0x600DF00D in .data; bss_buf, 4 KiB of .bss that
 * the loader must zero (p_memsz > p_filesz).  When run (in 32-bit protected
 * mode or long mode, flat segments, once those modes exist) it writes "ok\n"
 * to COM1 and halts.  No libc, no libgcc, no includes.
 */

unsigned int data_word = 0x600DF00D;        /* in .data: the file holds it */
unsigned char bss_buf[4096];                /* in .bss: the loader zeroes it */
unsigned long boot_magic, boot_info;        /* EAX/EBX at entry (Multiboot) */

static void outb(unsigned short port, unsigned char v) {
  __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port));
}

void kmain(void) {
  const char *s = "ok\n";
  bss_buf[0] = (unsigned char)data_word;     /* touch both, so neither is dropped */
  while (*s) outb(0x3f8, (unsigned char)*s++);
  for (;;) __asm__ volatile("cli; hlt");
}

/* _start: keep the boot registers, set a stack at the end of bss_buf, call kmain. */
#ifdef __x86_64__
__asm__(".globl _start\n_start:\n"
        "  mov %eax, boot_magic(%rip)\n"
        "  mov %rbx, boot_info(%rip)\n"
        "  lea bss_buf+4096(%rip), %rsp\n"
        "  call kmain\n"
        "1: hlt\n  jmp 1b\n");
#else
__asm__(".globl _start\n_start:\n"
        "  mov %eax, boot_magic\n"
        "  mov %ebx, boot_info\n"
        "  mov $bss_buf+4096, %esp\n"
        "  call kmain\n"
        "1: hlt\n  jmp 1b\n");
#endif
