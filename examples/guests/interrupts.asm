; interrupts.asm - the guest of examples/interrupts.lua: real mode, loaded
; at 0x1000.  Puts its timer handler in the IVT (vector 8, the PC's IRQ 0),
; enables interrupts and counts the ticks the host injects:
;   1. busy: polls port 0x40 (the host injects a tick every few reads)
;      until 10 ticks arrived;
;   2. idle: halts until 15 ticks arrived (the host injects one per hlt exit).
; The handler acknowledges each tick with an EOI to port 0x20.  At the end
; it reports the count on port 0x402 (16-bit OUT) and halts with IF clear.
        bits 16
        org 0x1000

start:
        xor ax, ax
        mov ds, ax
        mov ss, ax
        mov sp, 0x8000
        cli
        mov word [8 * 4], timer         ; IVT[8] = 0000:timer
        mov word [8 * 4 + 2], 0
        sti
.busy:  in al, 0x40                     ; "poll the timer": the host may inject now
        inc word [polls]
        cmp word [ticks], 10
        jb .busy
.idle:  hlt                             ; woken by the next tick
        cmp word [ticks], 15
        jb .idle
        cli
        mov ax, [ticks]
        mov dx, 0x402
        out dx, ax
        hlt

timer:  inc word [cs:ticks]             ; IRQ 0: count it, EOI, return
        push ax
        mov al, 0x20
        out 0x20, al
        pop ax
        iret

ticks:  dw 0
polls:  dw 0
