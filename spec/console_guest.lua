-- console_guest.lua - a tiny serial "shell" for console_spec.lua: prints
-- "$ ", echoes what it receives in capitals, a new prompt after each line,
-- and leaves through an unclaimed OUT to 0xf4 on "!".  Run directly
-- (moonvisor spec/console_guest.lua) it is interactive on the terminal.
local mv = require "moonvisor"
local H = require "helpers"
local uart = require "moonvisor.dev.uart"
local console = require "moonvisor.console"

local M = {}

M.SOURCE = [[
      mov sp, 0x8000
      mov si, prompt
      call puts
    next:
      mov dx, 0x3fd
    wait_rx:
      in al, dx
      test al, 1               ; LSR.DR: a byte is there
      jz wait_rx
      mov dx, 0x3f8
      in al, dx
      cmp al, '!'
      je leave
      cmp al, 13
      jne not_cr
      mov al, 10               ; a terminal's Enter
    not_cr:
      cmp al, 'a'
      jb echo
      cmp al, 'z'
      ja echo
      sub al, 32
    echo:
      call putc
      cmp al, 10
      jne next
      mov si, prompt
      call puts
      jmp next
    leave:
      out 0xf4, al
      hlt
    puts:
      lodsb
      test al, al
      jz .done
      call putc
      jmp puts
    .done:
      ret
    putc:
      push ax
      mov dx, 0x3fd
    .wait:
      in al, dx
      test al, 0x20            ; LSR.THRE
      jz .wait
      pop ax
      mov dx, 0x3f8
      out dx, al
      ret
    prompt: db "$ ", 0]]

-- A guest running the shell and a console on its UART.
function M.new(opts)
  local g, cpu = H.real(M.SOURCE)
  local u = uart.new(g, { output = false })
  local c = console.new{
    uart = u, output = opts and opts.output,
    step = function(ms)
      local e = cpu:run{ timeout_ms = ms }
      if e.type == "timeout" then return nil end
      return e.type == "io" and ("port 0x%x"):format(e.port) or e.type
    end,
  }
  return c, g, cpu
end

if arg and arg[0] and arg[0]:find("console_guest%.lua$") then
  local c = M.new()
  local result, how = c:interact()
  io.write(("\n[console: %s]\n"):format(tostring(result or how)))
end

return M
