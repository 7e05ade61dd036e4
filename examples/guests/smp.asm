; smp.asm - the SMP example's guest (examples/smp.lua), loaded at 0x1000.
; CPU 0 (the BSP) runs the 32-bit code at 0x1000 and starts the others (the
; APs): with USE_SIPI = 1 through the local APIC (INIT, then a startup IPI
; with vector 8: the APs begin in real mode at 0x8000), otherwise by setting
; GO, which the APs, started by the host at 0x8000, wait for.  Then every
; CPU adds 1 to COUNTER ITERATIONS times with `lock xadd` (and counts its
; own additions at MINE + 4 * id), reports its id (from CPUID leaf 1, the
; initial APIC id) with `out REPORT, eax` and halts.
        org 0x1000

COUNTER    equ 0x500            ; the shared counter
ARRIVED    equ 0x504            ; CPUs done
GO         equ 0x508            ; set by the BSP: APs may start
ITERATIONS equ 0x50c            ; set by the host
USE_SIPI   equ 0x510            ; set by the host: 1 = INIT/SIPI through the local APIC
MINE       equ 0x600            ; per-CPU counts, by APIC id
REPORT     equ 0x520            ; io port: the host hears each CPU finish
ICR_LOW    equ 0xfee00300       ; local APIC interrupt command register
ICR_HIGH   equ 0xfee00310

; id in ebx; adds, counts, reports, halts.  Assembles in 16 and 32 bits.
%macro WORK 0
        mov ecx, [ITERATIONS]
%%add:  mov eax, 1
        lock xadd [COUNTER], eax
        inc dword [MINE + ebx * 4]
        dec ecx
        jnz %%add
        mov eax, ebx
        mov dx, REPORT
        out dx, eax
        lock inc dword [ARRIVED]
%%halt: hlt
        jmp %%halt
%endmacro

        bits 32
bsp:    mov eax, 1
        cpuid
        shr ebx, 24                     ; initial APIC id: 0
        cmp dword [USE_SIPI], 1
        jne .release
        mov dword [ICR_HIGH], 0
        mov dword [ICR_LOW], 0x000c4500 ; INIT, level assert, all excluding self
        mov dword [ICR_LOW], 0x000c4608 ; startup IPI, vector 8: real mode at 0x8000
        jmp .work
.release:
        mov dword [GO], 1
.work:  WORK

        times 0x8000 - 0x1000 - ($ - $$) db 0xf4

        bits 16                         ; 0x8000: CS base 0x8000 after a SIPI, 0 when the host starts it
ap:     xor ax, ax
        mov ds, ax
        cmp dword [USE_SIPI], 1
        je .go
.wait:  pause
        cmp dword [GO], 0
        je .wait
.go:    mov eax, 1
        cpuid
        shr ebx, 24                     ; this CPU's APIC id
        WORK
