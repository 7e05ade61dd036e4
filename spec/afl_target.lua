-- afl_target.lua - the harness spec/afl_spec.lua runs under AFL++ (and with
-- --repro): a CPL3 stub in mode = "user" whose first input byte picks the
-- outcome, one of each kind a harness maps to AFL++:
--   'Z'  a write to an unmapped address   mem-write      SIGSEGV
--   'U'  ud2                              exception-6    SIGILL
--   'F'  system call 2 (oracle.check)     guest-failure  SIGABRT
--   'H'  a loop forever                   a hang (AFL++'s -t)
--   'E'  the oracle raises                a harness error: the server stops
--        (only with MOONVISOR_AFL_TARGET_ORACLE_ERROR=1; otherwise done)
--   else system call 60                   done
-- 'A' 'B' 'C' in the next bytes take branches, for coverage.  Needs spec/
-- on LUA_PATH (helpers.asm: nasm).  MOONVISOR_AFL_TARGET_SETUP_ERROR=1 makes
-- setup fail.
local mv = require "moonvisor"
local core = require "moonvisor.core"
local fuzz_cli = require "moonvisor.fuzz_cli"
local H = require "helpers"

local code = [[
  cmp rsi, 1
  jb done
  mov al, [0x10000]
  cmp al, 'Z'
  je wild
  cmp al, 'U'
  je undef
  cmp al, 'F'
  je fail
  cmp al, 'H'
  je spin
  cmp rsi, 2
  jb done
  mov al, [0x10001]
  cmp al, 'A'
  jne notA
  mov bl, 1
notA:
  cmp al, 'B'
  jne notB
  mov bl, 2
notB:
  cmp al, 'C'
  jne done
  mov bl, 3
  jmp done
wild:
  mov byte [0x40000000], 1
undef:
  ud2
fail:
  mov eax, 2
  syscall
spin:
  jmp spin
done:
  mov eax, 60
  syscall
  jmp done]]

-- Every instruction start is a block.  (On the soft backend the ud2 comes
-- back as an "unknown" exit, SIGABRT, rather than exception 6: after two
-- resumed stops in one run, Unicorn 2.0.1 returns from a ud2 without an
-- error; afl_spec.lua says so where it checks 'U'.)
local bin = H.asm(code, 64)
local blocks = {}
for _, insn in ipairs(core.disasm(bin, 0x1000, 64)) do blocks[#blocks + 1] = insn.address end

local result = fuzz_cli.main({
  setup = function()
    if os.getenv("MOONVISOR_AFL_TARGET_SETUP_ERROR") then error("afl_target: setup failed on purpose", 0) end
    local g = H.guest()
    g:map(0, mv.vmo(0x200000))
    g:write(0x1000, bin)
    return g, g:vcpu{ entry = 0x1000, mode = "user", stack = 0x8000 }
  end,
  input = { addr = 0x10000, max_len = 64, len_reg = "rsi" },
  done = function(exit, cpu) return exit.type == "syscall" and cpu.rax == 60 end,
  oracle = { check = function(exit, cpu, data)
    if data:sub(1, 1) == "E" and os.getenv("MOONVISOR_AFL_TARGET_ORACLE_ERROR") then
      error("afl_target: the oracle failed on purpose")
    end
    if exit.type == "syscall" and cpu.rax == 2 then return "guest-failure" end
  end },
  coverage = { blocks = blocks },
  corpus = { "xA" },
  timeout_ms = 20,
  findings = os.getenv("MOONVISOR_AFL_TARGET_FINDINGS") or "afl-target-findings",
}, arg)
if result and result.repro then os.exit(result.key and 0 or 1) end
