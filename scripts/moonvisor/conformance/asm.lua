-- conformance/asm.lua - turns instances (conformance/gen) into bytes with
-- one nasm run for a whole batch: each instance between two labels, the
-- label addresses read back from nasm's map file.  Instances use no
-- RIP-relative addressing or branches, so their bytes can be concatenated
-- in any order (the minimiser drops instances without reassembling).
-- The same text gets the same bytes: results are cached per text.
local asm = {}

local cache = {}

local slurp = require("moonvisor.files").read

-- Sets inst.bytes for each instance of `list` (a list of lists of
-- instances, or of instances).  Raises naming the instance nasm refused.
function asm.assemble(list)
  local todo, seen = {}, {}
  local function visit(inst)
    if inst.text then
      inst.bytes = inst.bytes or cache[inst.text]
      if not inst.bytes and not seen[inst.text] then
        seen[inst.text] = true
        todo[#todo + 1] = inst.text
      end
    else
      for _, i in ipairs(inst) do visit(i) end
    end
  end
  visit(list)
  if #todo > 0 then
    local base = os.tmpname()
    local src, out, map, err = base .. ".asm", base .. ".bin", base .. ".map", base .. ".err"
    local f = assert(io.open(src, "w"))
    f:write("[map symbols ", map, "]\nbits 64\n")
    for i, text in ipairs(todo) do f:write("L", i, ":\n", text, "\n") end
    f:write("L", #todo + 1, ":\n")
    f:close()
    local ok = os.execute(("nasm -w-all -f bin -o %q %q 2>%q"):format(out, src, err))
    local bin, mapped, msg = slurp(out), slurp(map), slurp(err) or ""
    local lines = {}
    if not ok then
      for l in io.lines(src) do lines[#lines + 1] = l end
    end
    for _, p in ipairs { base, src, out, map, err } do os.remove(p) end
    if not ok then
      local n = tonumber(msg:match(":(%d+):"))
      error(("conformance.asm: nasm refused %q: %s"):format(n and lines[n] or "?", msg:gsub("\n.*", "")), 2)
    end
    local at = {}
    for addr, n in mapped:gmatch("%x+%s+(%x+)%s+L(%d+)") do at[tonumber(n)] = tonumber(addr, 16) end
    for i, text in ipairs(todo) do
      assert(at[i] and at[i + 1], "conformance.asm: label missing from nasm's map file")
      cache[text] = bin:sub(at[i] + 1, at[i + 1])
    end
    visit(list)
  end
end

-- The bytes of one text, assembled alone (cached).
function asm.bytes(text)
  local inst = { text = text }
  asm.assemble { inst }
  return inst.bytes
end

return asm
