// spdlog integration (target ctxvars::spdlog): a pattern flag that prints the
// current context's variables in every log line, like log4j's MDC.
//
//   // every formattable variable of the current context, sorted by name:
//   logger->set_formatter(ctxvars::spdlog::formatter("[%l] %v %&"));
//   // only chosen variables, in this order:
//   logger->set_formatter(ctxvars::spdlog::formatter("[%l] %v %&", {"request_id", "tenant"}));
//   ...
//   auto s = request_id.scoped_set("c22-r0");
//   logger->info("charged");              // [info] charged request_id=c22-r0 tenant=acme
//
// Sync loggers format on the calling thread: the flag reads the current
// context there. An async logger formats on its worker thread, where the
// caller's context is not current, so the context must be captured at the
// call: wrap the async logger with capture_context(). The wrapper (an
// ordinary spdlog::logger) prints the fields at the call into a prefix of the
// message it hands to the async logger, and wraps the async logger's sinks
// so that, on the worker thread, they strip the prefix (the message and %v
// are untouched) and show the captured fields to the flag. Works with every
// sink, every pattern, any number of worker threads and both overflow policies.
//
//   auto async = spdlog::create_async<spdlog::sinks::basic_file_sink_mt>("app", "app.log");
//   auto log = ctxvars::spdlog::capture_context(async);   // log through `log`
//   log->set_formatter(ctxvars::spdlog::formatter("%v %&"));
//
// Fields are `name=value` as in <ctxvars/format.hpp> (escaped; variables
// without a formatter are left out).
#pragma once

#include <spdlog/async_logger.h>
#include <spdlog/logger.h>
#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/sink.h>

#include <algorithm>
#include <initializer_list>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "format.hpp"

namespace ctxvars::spdlog {

namespace detail {

// Captured fields are kept as `name=value` pairs separated by \x1f (escaped
// text never holds control bytes, so the separator cannot occur inside).
inline constexpr char pair_sep = '\x1f';
inline constexpr std::string_view marker = "\x1e\x1d" "ctxv:";  // starts a captured prefix
// The same, for a line the wrapper's flush_on() level asks to flush: the sink
// flushes right after writing it (on the worker thread, in order).
inline constexpr std::string_view flush_marker = "\x1e\x1d" "ctxf:";
inline constexpr char prefix_end = '\x1e';
static_assert(marker.size() == flush_marker.size());

// spdlog's banners around a backtrace dump (logger::dump_backtrace_).
inline constexpr std::string_view backtrace_start = "****************** Backtrace Start ******************";
inline constexpr std::string_view backtrace_end = "****************** Backtrace End ********************";

// The pairs of the current context, sorted by name then variable id.
inline void capture_pairs(std::string& out) { append_current_fields(out, pair_sep); }

// The fields the flag prints on this thread right now: set by capture_sink
// around a captured message (the pointer is null otherwise: then the flag reads
// the current context).
inline thread_local const std::string_view* captured = nullptr;

// Wraps one sink of an async logger: strips the captured prefix, shows the
// fields to the flag for the duration of the inner log() call.
class capture_sink final : public ::spdlog::sinks::sink {
 public:
  explicit capture_sink(::spdlog::sink_ptr inner) : inner_(std::move(inner)) {}
  void log(const ::spdlog::details::log_msg& msg) override {
    std::string_view payload(msg.payload.data(), msg.payload.size());
    std::string_view fields;
    const bool flush_after = payload.substr(0, flush_marker.size()) == flush_marker;
    if (!inner_->should_log(msg.level)) {
      if (flush_after) inner_->flush();  // spdlog flushes every sink, also those that filtered the line
      return;
    }
    if (flush_after || payload.substr(0, marker.size()) == marker) {
      payload.remove_prefix(marker.size());
      const std::size_t end = payload.find(prefix_end);
      if (end != std::string_view::npos) {
        fields = payload.substr(0, end);
        payload.remove_prefix(end + 1);
      }
    }
    ::spdlog::details::log_msg copy(msg);
    copy.payload = ::spdlog::string_view_t(payload.data(), payload.size());
    const std::string_view* prev = captured;
    captured = &fields;
    try {
      inner_->log(copy);
    } catch (...) {
      captured = prev;
      throw;
    }
    captured = prev;
    if (flush_after) inner_->flush();
  }
  void flush() override { inner_->flush(); }
  void set_pattern(const std::string& pattern) override { inner_->set_pattern(pattern); }
  void set_formatter(std::unique_ptr<::spdlog::formatter> f) override { inner_->set_formatter(std::move(f)); }
  const ::spdlog::sink_ptr& inner() const noexcept { return inner_; }

 private:
  ::spdlog::sink_ptr inner_;
};

// The logger capture_context() returns. Honours spdlog::logger's contract:
// level and should_log() filter at the call; flush_on(level) flushes each sink
// right after it writes a line at that level (on the worker thread, so the
// line is in before the flush); flush() flushes through the async logger;
// clone() returns a capturing logger (over a clone of the async one);
// enable_backtrace()/dump_backtrace() replay the stored lines without fields —
// spdlog stores them with no hook to capture the context at the call, and the
// dumping caller's context is not theirs. set_error_handler(): errors of the
// sinks happen in the async logger (on its worker): set the handler there;
// the wrapper's own handler sees errors of the capture (a throwing formatter).
class capturing_logger final : public ::spdlog::logger {
 public:
  // Shares `inner`'s (wrapped) sinks, so set_formatter/set_pattern on this
  // logger reach them; log calls go through `inner`.
  explicit capturing_logger(std::shared_ptr<::spdlog::logger> inner)
      : ::spdlog::logger(inner->name(), inner->sinks().begin(), inner->sinks().end()), inner_(std::move(inner)) {
    set_level(inner_->level());
    inner_->set_level(::spdlog::level::trace);  // this wrapper filters
  }
  const std::shared_ptr<::spdlog::logger>& inner() const noexcept { return inner_; }

  std::shared_ptr<::spdlog::logger> clone(std::string logger_name) override {
    auto c = std::make_shared<capturing_logger>(*this);
    c->inner_ = inner_->clone(logger_name);
    c->name_ = std::move(logger_name);
    return c;
  }

 protected:
  void sink_it_(const ::spdlog::details::log_msg& msg) override {
    // A reused buffer, unless a formatter logs from inside this call.
    thread_local std::string tl_buf;
    thread_local int depth = 0;
    std::string local;
    std::string& buf = depth ? local : tl_buf;
    struct guard {
      int& d;
      ~guard() { --d; }
    } g{++depth};
    // A backtrace dump replays stored lines through here between two banners
    // (spdlog 1.x, on the dumping thread): they get no fields.
    thread_local const capturing_logger* dumping = nullptr;
    const std::string_view text(msg.payload.data(), msg.payload.size());
    if (msg.source.empty() && msg.level == ::spdlog::level::info && text == backtrace_start) dumping = this;
    const bool replay = dumping == this;
    if (replay && msg.source.empty() && msg.level == ::spdlog::level::info && text == backtrace_end)
      dumping = nullptr;
    buf.assign(should_flush_(msg) ? flush_marker : marker);
    if (!replay) capture_pairs(buf);
    buf += prefix_end;
    buf.append(msg.payload.data(), msg.payload.size());
    inner_->log(msg.time, msg.source, msg.level, ::spdlog::string_view_t(buf.data(), buf.size()));
  }
  void flush_() override { inner_->flush(); }

 private:
  std::shared_ptr<::spdlog::logger> inner_;
};

}  // namespace detail

// The pattern flag. With no names: every formattable variable of the context,
// sorted by name (then id), space-separated. With names: those variables that
// have a value, in the order given. Prints nothing for an empty context.
// Cost per line: one walk of the context (or of the captured text) plus the
// formatting of each value.
class context_flag final : public ::spdlog::custom_flag_formatter {
 public:
  context_flag() = default;
  explicit context_flag(std::vector<std::string> names) : names_(std::move(names)) {
    for (auto& n : names_) {
      std::string e;
      ctxvars::detail::append_escaped(e, n);
      escaped_.push_back(std::move(e) + "=");
    }
  }

  void format(const ::spdlog::details::log_msg&, const std::tm&, ::spdlog::memory_buf_t& dest) override {
    thread_local std::string tl_pairs;
    thread_local int depth = 0;
    std::string local;
    std::string& pairs = depth ? local : tl_pairs;  // a formatter may log from inside
    struct guard {
      int& d;
      ~guard() { --d; }
    } g{++depth};
    std::string_view src;
    if (detail::captured) {
      src = *detail::captured;
    } else {
      pairs.clear();
      detail::capture_pairs(pairs);
      src = pairs;
    }
    if (escaped_.empty()) {
      for (char c : src) dest.push_back(c == detail::pair_sep ? ' ' : c);
      return;
    }
    bool first = true;
    for (const std::string& want : escaped_) {
      std::size_t b = 0;
      while (b <= src.size()) {
        std::size_t e = src.find(detail::pair_sep, b);
        if (e == std::string_view::npos) e = src.size();
        const std::string_view pair = src.substr(b, e - b);
        if (pair.substr(0, want.size()) == want) {
          if (!first) dest.push_back(' ');
          first = false;
          dest.append(pair.data(), pair.data() + pair.size());
          break;
        }
        b = e + 1;
      }
    }
  }
  std::unique_ptr<::spdlog::custom_flag_formatter> clone() const override {
    auto c = std::make_unique<context_flag>();
    c->names_ = names_;
    c->escaped_ = escaped_;
    return c;
  }

 private:
  std::vector<std::string> names_;
  std::vector<std::string> escaped_;
};

// A pattern formatter for `pattern` in which `flag` (default `%&`) prints the
// context's fields (all, or `names` only; see context_flag).
inline std::unique_ptr<::spdlog::pattern_formatter> formatter(std::string pattern, std::vector<std::string> names = {},
                                                              char flag = '&') {
  auto f = std::make_unique<::spdlog::pattern_formatter>();
  f->add_flag<context_flag>(flag, std::move(names)).set_pattern(std::move(pattern));
  return f;
}

// A logger that captures the caller's context at each call and logs through
// `async` (see the header comment). Wraps `async`'s sinks in place (once; a
// second call reuses them). Log through the returned logger; its level is
// `async`'s level at the time of the call, and `async` then passes everything.
inline std::shared_ptr<::spdlog::logger> capture_context(std::shared_ptr<::spdlog::logger> async) {
  for (auto& s : async->sinks())
    if (!std::dynamic_pointer_cast<detail::capture_sink>(s)) s = std::make_shared<detail::capture_sink>(s);
  return std::make_shared<detail::capturing_logger>(std::move(async));
}

}  // namespace ctxvars::spdlog
