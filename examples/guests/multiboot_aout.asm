; multiboot_aout.asm - a Multiboot v1 kernel in the "a.out kludge" form (flag
; bit 16): a flat binary whose header says where it goes, so the loader needs
; no ELF.  nasm -f bin -> build/guests/multiboot_aout.bin (the guests rule).
; Image at 0x100000: the header at its start, then code, then 0x1000 bytes
; of .bss (bss_end_addr > load_end_addr) that the loader must zero.
; Run (32-bit protected mode, flat segments, EAX = 0x2BADB002, EBX = info):
; it writes "mb\n" to COM1 and halts.  spec/load_spec.lua checks the fields.
        bits 32
        org 0x100000

MAGIC   equ 0x1BADB002
FLAGS   equ (1 << 0) | (1 << 1) | (1 << 16)   ; page-align modules, mem info, a.out kludge

header:                                 ; must be 4-byte aligned, in the first 8 KiB
        dd MAGIC
        dd FLAGS
        dd -(MAGIC + FLAGS)             ; checksum
        dd header                       ; header_addr: where this header is loaded
        dd header                       ; load_addr: start of the text segment (= file offset 0)
        dd load_end                     ; load_end_addr: end of what is copied from the file
        dd bss_end                      ; bss_end_addr: zeroed from load_end to here
        dd start                        ; entry_addr

start:
        mov [boot_magic], eax           ; keep what the loader handed over
        mov [boot_info], ebx
        mov esp, stack_top
        mov dx, 0x3f8
        mov al, 'm'
        out dx, al
        mov al, 'b'
        out dx, al
        mov al, 10
        out dx, al
.halt:  cli
        hlt
        jmp .halt

        align 4
data_word: dd 0x600DF00D                ; initialised data, in the file
load_end:                               ; the file ends here

        absolute load_end               ; .bss: not in the file
boot_magic: resd 1
boot_info:  resd 1
        alignb 16
stack:  resb 0x1000 - 8
stack_top:
bss_end:
