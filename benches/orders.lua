-- wrk script for benches/orders.sh.
--
--   wrk -s benches/orders.lua URL -- orders TOKENS_FILE PRODUCT_ID RUN_TAG
--   wrk -s benches/orders.lua URL -- healthz
--
-- "orders": POST /api/v1/orders for one unit of PRODUCT_ID. Each request takes the next access
-- token of TOKENS_FILE (one a line) round-robin, each thread starting at its own offset, and
-- carries a unique Idempotency-Key: RUN_TAG (unique per wrk run), the thread's number and a
-- per-thread counter. The requests are pre-rendered per token, so that per request only the key
-- is appended: wrk shares the cores with the server, and its cost should stay small.
-- "healthz": GET /healthz through the same script, to measure what the Lua hooks cost wrk.
--
-- Both modes count the answers by status (and, for non-2xx, by the problem `type` in the body)
-- and print them in done(), one per line: "STATUS <code> <type or -> <count>".

local threads = {}
local next_id = 0

function setup(thread)
   thread:set("thread_id", next_id)
   next_id = next_id + 1
   table.insert(threads, thread)
end

local mode, prefixes, bodies, counter, cursor, tag

local function read_tokens(path)
   local list = {}
   local file = assert(io.open(path, "r"), "cannot open the tokens file " .. tostring(path))
   for line in file:lines() do
      if #line > 0 then
         list[#list + 1] = line
      end
   end
   file:close()
   assert(#list > 0, "no tokens in " .. path)
   return list
end

function init(args)
   mode = args[1] or "orders"
   counts = {}
   counter = 0
   local host = wrk.host .. ":" .. tostring(wrk.port)
   if mode == "healthz" then
      prefixes = { "GET /healthz HTTP/1.1\r\nHost: " .. host .. "\r\n\r\n" }
      return
   end
   assert(mode == "orders", "mode must be orders or healthz, got " .. tostring(mode))
   local tokens = read_tokens(args[2])
   local product = assert(args[3], "PRODUCT_ID missing")
   tag = assert(args[4], "RUN_TAG missing") .. "-t" .. tostring(thread_id) .. "-"
   local body = '{"items":[{"product_id":"' .. product .. '","quantity":1}],'
      .. '"shipping_address":{"recipient":"Drop Bench","phone":"+82-10-0000-0000",'
      .. '"line1":"1 Bench Street","city":"Seoul","postal_code":"04524","country":"KR"}}'
   prefixes = {}
   for i, token in ipairs(tokens) do
      prefixes[i] = "POST /api/v1/orders HTTP/1.1\r\nHost: " .. host
         .. "\r\nAuthorization: Bearer " .. token
         .. "\r\nContent-Type: application/json\r\nContent-Length: " .. #body
         .. "\r\nIdempotency-Key: "
   end
   bodies = "\r\n\r\n" .. body
   -- Threads start far apart in the list, so they do not send the same customer together.
   cursor = (thread_id * 7919) % #prefixes
end

function request()
   if mode == "healthz" then
      return prefixes[1]
   end
   counter = counter + 1
   cursor = cursor % #prefixes + 1
   return prefixes[cursor] .. tag .. counter .. bodies
end

function response(status, headers, body)
   local key = status
   if status >= 300 and body then
      key = status .. " " .. (string.match(body, '"type":"([%w_]+)"') or "-")
   end
   counts[key] = (counts[key] or 0) + 1
end

function done(summary, latency, requests)
   local total = {}
   for _, thread in ipairs(threads) do
      local c = thread:get("counts")
      for key, n in pairs(c or {}) do
         total[key] = (total[key] or 0) + n
      end
   end
   local keys = {}
   for key in pairs(total) do
      keys[#keys + 1] = tostring(key)
   end
   table.sort(keys)
   for _, key in ipairs(keys) do
      local n = total[key] or total[tonumber(key)]
      local code, kind = string.match(key, "^(%d+) (.+)$")
      if not code then
         code, kind = key, "-"
      end
      io.write(string.format("STATUS %s %s %d\n", code, kind, n))
   end
end
