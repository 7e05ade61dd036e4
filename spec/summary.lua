-- summary.lua - busted output handler: the usual terminal output, then one
-- line CI can read: "spec: N passed, N failed" (errors count as failed).
return function(options)
  local busted = require "busted"
  local term = os.getenv("TERM") and os.getenv("TERM") ~= "dumb" and "utfTerminal" or "plainTerminal"
  local handler = require("busted.outputHandlers." .. term)(options)
  busted.subscribe({ "suite", "end" }, function()
    local failed = handler.failuresCount + handler.errorsCount
    local line = ("spec: %d passed, %d failed"):format(handler.successesCount, failed)
    if handler.pendingsCount > 0 then line = line .. (", %d skipped"):format(handler.pendingsCount) end
    local label = os.getenv("MOONVISOR_BACKEND")
    if label then io.write(("\n(backend %s) "):format(label)) end
    io.write("\n", line, "\n")
    io.flush()
    return nil, true
  end)
  return handler
end
