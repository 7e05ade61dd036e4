-- moonvisor.cli: walks a script's command line the GNU way, `--opt=value`
-- or `--opt value`, for the examples' own options.
--
--   for opt, value, a in cli.options(arg, usage) do
--     if opt == "--mem" then mem = value()        -- "=..." or the next argument
--     elseif ... else path = a end                 -- a: the argument as given
--   end
--
-- value() calls fail(message) (usage, say) when the option has no value.
local M = {}

function M.options(args, fail)
  local i = 0
  return function()
    i = i + 1
    local a = args[i]
    if a == nil then return nil end
    local opt, val = a:match("^(%-%-[%w-]+)=(.*)$")
    opt = opt or a
    local function value()
      if val then return val end
      i = i + 1
      if args[i] == nil then fail(opt .. " needs a value") end
      return args[i]
    end
    return opt, value, a
  end
end

return M
