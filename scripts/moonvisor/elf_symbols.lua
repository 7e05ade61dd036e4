-- moonvisor.elf_symbols: the defined symbols of an ELF file's symbol
-- tables, read when a loaded image's `symbols` or `symbol_list` is first
-- indexed (moonvisor.load_common's ELF parser keeps the tables' bytes).
--
--   elf_symbols.read(symtabs, is64, fail) -> symbols, list
--     symtabs  { { syms = bytes, strs = bytes } }: each table and its string table
--     fail     fail(fmt, ...) raises the loader's error
--     symbols  name -> address (a global symbol wins over a local one)
--     list     { { name, addr, size, global } } sorted by address, then name
local M = {}

local function hex(n) return ("0x%x"):format(n) end

-- The C string at off inside strs, or nil.
local function cstring(strs, off)
  if off < 0 or off >= #strs then return nil end
  local z = strs:find("\0", off + 1, true)
  if not z then return nil end
  return strs:sub(off + 1, z - 1)
end

function M.read(symtabs, is64, fail)
  local symbols, list = {}, {}
  local symsize = is64 and 24 or 16
  local fmt = is64 and "<I4BBI2i8i8" or "<I4I4I4BBI2"
  for _, st in ipairs(symtabs) do
    local syms, strs = st.syms, st.strs
    for j = 1, #syms // symsize - 1 do    -- entry 0 is the null symbol; whole entries only
      local st_name, st_info, st_shndx, st_value, st_size, _
      if is64 then
        st_name, st_info, _, st_shndx, st_value, st_size = string.unpack(fmt, syms, j * symsize + 1)
      else
        st_name, st_value, st_size, st_info, _, st_shndx = string.unpack(fmt, syms, j * symsize + 1)
      end
      local name = cstring(strs, st_name)
      if not name then fail("symbol %d: name offset %s is outside the string table", j, hex(st_name)) end
      local stype, bind = st_info & 0xf, st_info >> 4
      if name ~= "" and st_shndx ~= 0 and stype <= 2 then   -- NOTYPE, OBJECT, FUNC; defined
        list[#list + 1] = { name = name, addr = st_value, size = st_size, global = bind ~= 0 }
        if symbols[name] == nil or bind ~= 0 then symbols[name] = st_value end
      end
    end
  end
  table.sort(list, function(a, b)
    if a.addr ~= b.addr then return math.ult(a.addr, b.addr) end
    return a.name < b.name
  end)
  return symbols, list
end

return M
