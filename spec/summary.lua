-- summary.lua - busted output handler: the usual terminal output, then one
-- a "failed: FILE:LINE NAME" line per failure, and one line CI can read:
-- "spec: N passed, N failed" (errors count as failed).
return function(options)
  local busted = require "busted"
  local term = os.getenv("TERM") and os.getenv("TERM") ~= "dumb" and "utfTerminal" or "plainTerminal"
  local handler = require("busted.outputHandlers." .. term)(options)
  busted.subscribe({ "suite", "end" }, function()
    local failed = handler.failuresCount + handler.errorsCount
    local line = ("spec: %d passed, %d failed"):format(handler.successesCount, failed)
    if handler.pendingsCount > 0 then line = line .. (", %d skipped"):format(handler.pendingsCount) end
    -- One line per failed spec, so that a log's tail names them all.
    for _, list in ipairs { handler.failures, handler.errors } do
      for _, f in ipairs(list) do
        local t = f.trace or (f.element and f.element.trace) or {}
        io.write(("\nfailed: %s:%s %s"):format(t.short_src or "?", t.currentline or "?", f.name or "?"))
      end
    end
    local label = os.getenv("MOONVISOR_BACKEND")
    if label then io.write(("\n(backend %s) "):format(label)) end
    io.write("\n", line, "\n")
    io.flush()
    return nil, true
  end)
  return handler
end
