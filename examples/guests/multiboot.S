/* multiboot.S - the Multiboot v1 header linked in front of kernel.c to make
 * build/guests/multiboot.elf (an ELF kernel: no a.out kludge, flag bit 16
 * clear, so the loader uses the ELF program headers).
 *   flags bit 0: modules page-aligned; bit 1: mem_lower/mem_upper/mmap wanted. */
#define MB_MAGIC 0x1BADB002
#define MB_FLAGS 0x00000003
        .section .multiboot, "a"
        .align 4
        .long MB_MAGIC
        .long MB_FLAGS
        .long -(MB_MAGIC + MB_FLAGS)   /* magic + flags + checksum == 0 (mod 2^32) */
        .section .note.GNU-stack, "", @progbits   /* no executable stack */
