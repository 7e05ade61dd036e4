-- fuzz_parser.lua - fuzz the record parser of examples/guests/fuzz_target.c
-- (a 64-bit freestanding guest with a planted bug) from a snapshot taken
-- where it is ready for input, with breakpoint coverage.  The target runs at
-- CPL3 in mode = "user" (on kvm-pvm hosts ring-3 code runs natively, ring 0
-- is emulated) and talks to the host only through system calls: 1 "ready",
-- 60 "exit" with the parse result in RDI.
--
--   build/moonvisor examples/fuzz_parser.lua [--seconds 60] [--seed N] [--no-coverage]
--   build/moonvisor examples/fuzz_parser.lua --repro findings/mem-write-0x....bin
--
-- Findings go to fuzz-findings/ (--findings DIR).  Run from the repository
-- root after `make` (the guest and its block list are under build/guests/).
local mv = require "moonvisor"
local load = require "moonvisor.load"
local fuzz = require "moonvisor.fuzz"

local DIR = os.getenv("MOONVISOR_FUZZ_GUESTS") or "build/guests"
local image

local config
config = {
  -- the guest, stopped after the stub's "ready" system call (1).  The
  -- sandbox's tables (0xC000 bytes) go at their default, the end of RAM,
  -- which the target (1 MiB .. ~1.1 MiB) does not use.
  setup = function()
    local g = mv.guest{ backend = os.getenv("MOONVISOR_BACKEND") or mv.default_backend }
    g:map(0, mv.vmo(4 << 20))
    image = load.elf(g, DIR .. "/fuzz_target.elf")
    config.input.addr = image.symbols.input_buf
    local cpu = g:vcpu{ entry = image.entry, mode = "user", stack = image.symbols.stack_top }
    local e = cpu:run{ timeout_ms = 2000 }
    assert(e.type == "syscall" and cpu.rax == 1, "fuzz target did not get ready: " .. fuzz.describe_exit(e))
    return g, cpu
  end,
  -- each input goes into input_buf, its length into RSI
  input = { addr = nil --[[ input_buf, set by setup ]], max_len = 512, len_reg = "rsi" },
  -- an input ends normally with system call 60 ("exit", fuzz_one's result
  -- in RDI); any other system call, exception or unclaimed access is a finding
  done = function(exit, cpu) return exit.type == "syscall" and cpu.rax == 60 end,
  coverage = { blocks = DIR .. "/fuzz_target.blocks" },
  corpus = { "MVFZ\1\1\1\4abcd" },   -- one well-formed record
  timeout_ms = 50,
  seconds = 60,
  findings = "fuzz-findings",
  stop_after = 1,
}

local result = require("moonvisor.fuzz_cli").main(config, arg)
if result and result.repro then os.exit(result.key and 0 or 1) end   -- --repro: 0 when it is a finding
