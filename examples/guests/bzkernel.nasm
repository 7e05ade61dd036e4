; bzkernel.nasm - the real-mode part of the protocol test kernel: a boot
; sector and setup sectors holding the Linux/x86 setup header (boot protocol
; 2.15, Documentation/arch/x86/boot.rst), followed by the protected-mode
; kernel (bzkernel_head.S + bzkernel.c, linked at 1 MiB by bzkernel.ld and
; flattened with objcopy), included with incbin.  The Makefile assembles it:
;   nasm -f bin -DPM_IMAGE='"build/guests/bzkernel.pm"' -DKERNEL_END=0x... -o build/guests/bzImage
; KERNEL_END is the linked _end (image + bss + stack): init_size covers it.
; The 16-bit code after the header is never run by moonvisor (it enters at
; the 32- or 64-bit entry point); a BIOS loader running it would halt.
bits 16
org 0

%ifndef PM_IMAGE
%error "PM_IMAGE (the flat protected-mode kernel) must be defined"
%endif
%ifndef KERNEL_END
%define KERNEL_END 0x200000
%endif

SETUP_SECTS     equ 4                 ; setup sectors after the boot sector
LOAD_ADDR       equ 0x100000          ; pref_address, where bzkernel.ld links
LOADED_HIGH     equ 0x01
XLF_KERNEL_64   equ 0x01

boot_sector:
        jmp     0x07c0:.go - boot_sector
.go:    cli
.halt:  hlt
        jmp     .halt
        db      "moonvisor bzkernel: boot it with a Linux boot loader", 0
        times   0x1f1 - ($ - $$) db 0

; The setup header: every field the protocol defines up to version 2.15.
hdr:
setup_sects:            db SETUP_SECTS
root_flags:             dw 0
syssize:                dd (pm_end - pm_start + 15) / 16   ; in 16-byte paragraphs
ram_size:               dw 0
vid_mode:               dw 0xffff                          ; "normal"
root_dev:               dw 0
boot_flag:              dw 0xaa55
; 0x200: the jump over the header; its byte at 0x201 gives the header's end
        jmp     short start_of_setup
header:                 db "HdrS"
version:                dw 0x020f
realmode_swtch:         dd 0
start_sys_seg:          dw 0x1000
kernel_version:         dw kernel_version_string - 0x200
type_of_loader:         db 0
loadflags:              db LOADED_HIGH
setup_move_size:        dw 0x8000
code32_start:           dd LOAD_ADDR
ramdisk_image:          dd 0
ramdisk_size:           dd 0
bootsect_kludge:        dd 0
heap_end_ptr:           dw 0
ext_loader_ver:         db 0
ext_loader_type:        db 0
cmd_line_ptr:           dd 0
initrd_addr_max:        dd 0x7fffffff
kernel_alignment:       dd 0x200000
relocatable_kernel:     db 0                               ; runs where it is linked
min_alignment:          db 21
xloadflags:             dw XLF_KERNEL_64                   ; startup_64 at +0x200
cmdline_size:           dd 2047
hardware_subarch:       dd 0
hardware_subarch_data:  dq 0
payload_offset:         dd 0
payload_length:         dd 0
setup_data:             dq 0
pref_address:           dq LOAD_ADDR
init_size:              dd (KERNEL_END - LOAD_ADDR + 0xfff) & ~0xfff
handover_offset:        dd 0
kernel_info_offset:     dd 0

start_of_setup:                       ; real-mode entry (setup segment:0x200)
        cli
.halt:  hlt
        jmp     .halt

kernel_version_string:
        db      "1.0.0 (moonvisor bzkernel, boot protocol test kernel)", 0

        times   (SETUP_SECTS + 1) * 512 - ($ - $$) db 0

pm_start:                             ; the protected-mode kernel: loaded at LOAD_ADDR
        incbin  PM_IMAGE
pm_end:
