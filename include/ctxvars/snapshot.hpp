// Pickling's analogue: a context's registered variables saved to bytes and
// restored in another process (or taken off a queue later).
//
//   std::string bytes = ctxvars::save_snapshot(ctxvars::copy_context());
//   ...
//   ctxvars::restored r = ctxvars::restore_snapshot(bytes);
//   for (auto& key : r.unknown) log("not restored: {}", key);
//   r.ctx.run(job);
//
// Format, version 1 (all integers LEB128 varints):
//   "CTXV" magic, version (1 byte), entry count, then per entry:
//   key length, key bytes, value length, value bytes (the codec's text).
// Entries are sorted by key. A reader rejects other versions (parse_error
// naming both), truncated or trailing bytes, duplicate keys, more than 65536
// entries or a snapshot over 16 MiB.
#pragma once

#include <cstdint>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "codec.hpp"
#include "context.hpp"

namespace ctxvars {

inline constexpr std::uint8_t snapshot_version = 1;
inline constexpr std::size_t max_snapshot_entries = 65536;
inline constexpr std::size_t max_snapshot_bytes = 16u << 20;

namespace detail {
inline void put_varint(std::string& out, std::uint64_t v) {
  while (v >= 0x80) {
    out += static_cast<char>((v & 0x7f) | 0x80);
    v >>= 7;
  }
  out += static_cast<char>(v);
}
[[noreturn]] inline void snapshot_fail(const std::string& what) {
  throw parse_error("ctxvars: invalid snapshot: " + what);
}
struct byte_reader {
  std::string_view s;
  std::size_t i = 0;
  std::uint64_t varint() {
    std::uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (i == s.size()) snapshot_fail("truncated");
      const auto b = static_cast<unsigned char>(s[i++]);
      if (shift == 63 && b > 1) snapshot_fail("varint overflow");
      v |= std::uint64_t(b & 0x7f) << shift;
      if (!(b & 0x80)) return v;
    }
    snapshot_fail("varint too long");
  }
  std::string_view bytes() {
    const std::uint64_t n = varint();
    if (n > s.size() - i) snapshot_fail("truncated");
    std::string_view r = s.substr(i, static_cast<std::size_t>(n));
    i += static_cast<std::size_t>(n);
    return r;
  }
};
}  // namespace detail

// The registered variables of `c` (codec.hpp) as bytes. Variables that are
// not registered are not saved. Throws what a codec throws, std::bad_alloc.
inline std::string save_snapshot(const context& c, const registry& r = registry::global()) {
  const auto entries = r.encode(c);
  std::string out = "CTXV";
  out += static_cast<char>(snapshot_version);
  detail::put_varint(out, entries.size());
  for (const auto& [k, v] : entries) {
    detail::put_varint(out, k.size());
    out += k;
    detail::put_varint(out, v.size());
    out += v;
  }
  return out;
}

// What restore_snapshot made: the new context, and the keys it held that no
// registered variable claims (reported, never silently dropped).
struct restored {
  context ctx;
  std::vector<std::string> unknown;
};

// A new context: `base`'s variables plus the snapshot's registered ones.
// Throws parse_error (nothing applied) on malformed bytes, another version, or
// a value its codec rejects.
inline restored restore_snapshot(std::string_view bytes, const context& base = copy_context(),
                                 const registry& r = registry::global()) {
  if (bytes.size() > max_snapshot_bytes) detail::snapshot_fail("larger than 16 MiB");
  if (bytes.size() < 5 || bytes.substr(0, 4) != "CTXV") detail::snapshot_fail("not a ctxvars snapshot (bad magic)");
  const auto version = static_cast<unsigned char>(bytes[4]);
  if (version != snapshot_version)
    detail::snapshot_fail("version " + std::to_string(version) + " is not supported (this build reads version " +
                          std::to_string(snapshot_version) + ")");
  detail::byte_reader in{bytes, 5};
  const std::uint64_t n = in.varint();
  if (n > max_snapshot_entries) detail::snapshot_fail("more than 65536 entries");
  std::vector<std::pair<std::uint64_t, detail::box_ptr>> boxes;
  std::vector<std::string> unknown;
  std::set<std::string_view> seen;  // views into `bytes`
  for (std::uint64_t k = 0; k < n; ++k) {
    const std::string_view key = in.bytes();
    const std::string_view value = in.bytes();
    if (!seen.insert(key).second) detail::snapshot_fail("duplicate key '" + std::string(key) + "'");
    auto e = r.find_key(key);
    if (!e) {
      unknown.emplace_back(key);
      continue;
    }
    try {
      boxes.emplace_back(e->id, e->decode(e->info, value));
    } catch (const std::bad_alloc&) {
      throw;
    } catch (const std::exception& x) {
      detail::snapshot_fail("value of '" + std::string(key) + "' rejected by its codec: " + x.what());
    }
  }
  if (in.i != bytes.size()) detail::snapshot_fail("trailing bytes after the last entry");
  return restored{detail::context_with(base, boxes), std::move(unknown)};
}

}  // namespace ctxvars
