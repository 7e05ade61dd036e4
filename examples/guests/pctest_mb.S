/* pctest_mb.S - the Multiboot v1 entry of pctest.c, linked the ordinary
 * way (ld -m elf_i386 -Ttext ADDR, no linker script: the ELF headers land in
 * a loadable segment one page below ADDR).  Calls kmain(eax, ebx, 0). */
#define MB_MAGIC 0x1BADB002
#define MB_FLAGS 0x00000003               /* page-aligned modules, memory info */
#include "pctest_entry.inc"

        .text
        .globl _start
        .align 4
mb_header:
        .long MB_MAGIC, MB_FLAGS, -(MB_MAGIC + MB_FLAGS)
_start:
        pctest_enter 0, %eax              /* protocol 0: Multiboot; eax: its magic */

        pctest_data
