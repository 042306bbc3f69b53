-- codec_spec.lua - the C wire codecs (via polaris.codec) against frames built
-- independently by Python (spec/fixtures/make_frames.py), fed whole and
-- split at every byte boundary.
local codec = require "polaris.codec"
local cjson = require "cjson"
local H = require "helpers"

local dir = "spec/fixtures/frames/"
local index = cjson.decode(H.read_file(dir .. "index.json"))

local function decoder(proto)
  return proto == "lsp" and codec.lsp_decoder() or codec.plp_decoder()
end

-- Feeds chunks and collects every decoder answer until it needs more.
local function run(proto, chunks)
  local d = decoder(proto)
  local out = {}
  for _, c in ipairs(chunks) do
    d:feed(c)
    while true do
      local f, err, code = d:next()
      if f then
        out[#out + 1] = f
      elseif f == false then
        out[#out + 1] = {skip = err}
      elseif err then
        out[#out + 1] = {error = err, code = code}
        return out
      else
        break
      end
    end
  end
  return out
end

local function check(expect, got)
  local want = #expect.frames + (expect.error and 1 or 0)
  assert.are.equal(want, #got)
  for i, e in ipairs(expect.frames) do
    local g = got[i]
    if e.skip then
      assert.are.equal(e.skip, g.skip)
    else
      assert.are.equal(e.type, g.type)
      assert.are.equal(e.payload, g.payload)
      if e.req_id then assert.are.equal(e.req_id, g.req_id) end
      if e.seq then assert.are.equal(e.seq, g.seq) end
      if e.flags then assert.are.equal(e.flags, g.flags) end
    end
  end
  if expect.error then
    assert.are.equal(expect.error, got[#got].error)
    assert.is_true(got[#got].code < 0)
  end
end

describe("codec fixtures", function()
  for _, expect in ipairs(index.decode) do
    local bytes = H.read_file(dir .. expect.file .. ".bin")

    it("decodes " .. expect.file .. " whole", function()
      check(expect, run(expect.proto, {bytes}))
    end)

    if #bytes < 4096 then
      it("decodes " .. expect.file .. " split at every byte boundary", function()
        for cut = 0, #bytes do
          check(expect, run(expect.proto, {bytes:sub(1, cut), bytes:sub(cut + 1)}))
        end
        local singles = {}
        for i = 1, #bytes do singles[i] = bytes:sub(i, i) end
        check(expect, run(expect.proto, singles))
      end)
    end
  end

  for _, e in ipairs(index.encode) do
    it("encodes " .. e.file .. " byte for byte like the reference", function()
      local want = H.read_file(dir .. e.file .. ".bin")
      local got
      if e.proto == "lsp" then
        got = codec.lsp_encode(e.type, e.id, e.payload)
      else
        got = codec.plp_encode(e.type, e.id, e.payload, {flags = e.flags or codec.PLP_FLAG_JSON})
      end
      assert.are.equal(want, got)
    end)
  end
end)

describe("codec errors are sticky and isolated", function()
  it("keeps failing after a fatal LSP error, and a fresh decoder is unaffected", function()
    local bad = codec.lsp_decoder()
    bad:feed(H.read_file(dir .. "lsp_too_short.bin"))
    assert.is_nil((bad:next()))
    bad:feed(codec.lsp_encode(1, 1, "{}"))
    local f, err = bad:next()
    assert.is_nil(f)
    assert.are.equal("total_len below header size", err)
    local good = codec.lsp_decoder()
    good:feed(codec.lsp_encode(1, 1, "{}"))
    assert.are.equal("{}", good:next().payload)
  end)
end)

describe("gzip and crc32", function()
  it("round-trips and compresses at the threshold", function()
    local s = string.rep("abc", 1000)
    assert.are.equal(s, codec.gunzip(codec.gzip(s)))
    local small = codec.plp_encode(codec.PLP_EVENT_H2G, 1, string.rep("x", 1023), {gzip_min = 1024})
    local large = codec.plp_encode(codec.PLP_EVENT_H2G, 1, string.rep("x", 1024), {gzip_min = 1024})
    local d = codec.plp_decoder()
    d:feed(small .. large)
    local a, b = d:next(), d:next()
    assert.are.equal(0, a.flags & codec.PLP_FLAG_GZIP)
    assert.are.equal(codec.PLP_FLAG_GZIP, b.flags & codec.PLP_FLAG_GZIP)
    assert.are.equal(string.rep("x", 1024), b.payload)
    assert.is_true(#large < #small)
  end)

  it("refuses output over the cap", function()
    local z = codec.gzip(string.rep("\0", 100000))
    local out, err = codec.gunzip(z, 99999)
    assert.is_nil(out)
    assert.are.equal("output too large", err)
    assert.are.equal(100000, #codec.gunzip(z, 100000))
  end)

  it("matches the standard check value", function()
    assert.are.equal(0xCBF43926, codec.crc32("123456789"))
  end)
end)
