/* pctest_pvh.S - the PVH entry of pctest.c: the Xen ELF note that makes
 * QEMU (and moonvisor run) boot an ELF kernel through PVH, and the 32-bit
 * entry it names (EBX = struct hvm_start_info).  Linked by pctest_pvh.ld. */
#include "pctest_entry.inc"

        .section .note.Xen, "a", @note
        .align 4
        .long 4                           /* namesz */
        .long 4                           /* descsz */
        .long 18                          /* XEN_ELFNOTE_PHYS32_ENTRY */
        .asciz "Xen"
        .long pvh_start

        .text
        .globl _start, pvh_start
_start:
pvh_start:
        pctest_enter 1, $0x336ec578       /* protocol 1: PVH; its magic */

        pctest_data
