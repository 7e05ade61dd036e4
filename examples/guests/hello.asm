; hello.asm - the flagship guest: real mode, loaded at 0x1000.
; Writes a greeting to the UART data port 0x3f8, asks the host for a number
; on port 0x3f9 (answered by a Lua io handler), writes it back to port 0x3fa
; plus one, and halts.
        bits 16
        org 0x1000

start:
        mov si, greeting
        mov dx, 0x3f8
.next:  lodsb                   ; al = next byte of the greeting
        test al, al
        jz .asked
        out dx, al
        jmp .next
.asked: mov dx, 0x3f9
        in ax, dx               ; the host's answer
        inc ax
        mov dx, 0x3fa
        out dx, ax              ; answer + 1: proof the value arrived
        hlt

greeting: db "Hello from a real-mode guest!", 10, 0
