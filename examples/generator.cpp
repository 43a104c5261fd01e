// A generator that sets a context variable: with a plain C++ coroutine
// generator (as with Python's generators: PEP 568 was never shipped) the set
// leaks into whoever iterates it, and the consumer's sets between two pulls
// overwrite the generator's own. ctxvars::generator runs its body in its own
// context layer over the consumer's context: neither happens.
#include <ctxvars/ctxvars.hpp>
#include <ctxvars/generator.hpp>

#include <coroutine>
#include <cstdio>
#include <exception>
#include <string>
#include <utility>

ctxvars::context_var<std::string> user("user", "nobody");
ctxvars::context_var<std::string> stage("stage", "none");

// The smallest plain generator: the body runs in whatever context is current
// on the thread that resumes it.
template <class T>
class plain_generator {
 public:
  struct promise_type {
    T value;
    plain_generator get_return_object() { return plain_generator(std::coroutine_handle<promise_type>::from_promise(*this)); }
    std::suspend_always initial_suspend() noexcept { return {}; }
    std::suspend_always final_suspend() noexcept { return {}; }
    std::suspend_always yield_value(T v) {
      value = std::move(v);
      return {};
    }
    void return_void() {}
    void unhandled_exception() { std::terminate(); }
  };
  explicit plain_generator(std::coroutine_handle<promise_type> h) : h_(h) {}
  plain_generator(plain_generator&& o) noexcept : h_(std::exchange(o.h_, {})) {}
  plain_generator& operator=(plain_generator&&) = delete;
  ~plain_generator() {
    if (h_) h_.destroy();
  }
  bool next() {
    h_.resume();
    return !h_.done();
  }
  const T& value() const { return h_.promise().value; }

 private:
  std::coroutine_handle<promise_type> h_;
};

// The same body, twice: it marks what it produces with its own "stage".
plain_generator<std::string> plain_rows() {
  stage.set("producing");
  for (int i = 0; i < 2; ++i) co_yield "row " + std::to_string(i) + " for " + user.get() + " at " + stage.get();
}

ctxvars::generator<std::string> layered_rows() {
  stage.set("producing");
  for (int i = 0; i < 2; ++i) co_yield "row " + std::to_string(i) + " for " + user.get() + " at " + stage.get();
}

int main() {
  int wrong = 0;
  auto check = [&wrong](bool ok, const char* what) {
    std::printf("  %s %s\n", ok ? "ok:  " : "LEAK:", what);
    wrong += ok ? 0 : 1;
  };

  std::printf("plain coroutine generator\n");
  ctxvars::context().run([&] {
    user.set("alice");
    stage.set("consuming");
    plain_generator<std::string> g = plain_rows();
    g.next();
    std::printf("  got '%s'; the consumer's stage is now '%s' (the body's set leaked out)\n", g.value().c_str(),
                stage.get().c_str());
    stage.set("consuming");  // the consumer restores its own value ...
    user.set("bob");
    g.next();  // ... which the body now sees as its own
    std::printf("  got '%s' (the consumer's set leaked in)\n", g.value().c_str());
  });

  std::printf("ctxvars::generator\n");
  ctxvars::context().run([&] {
    user.set("alice");
    stage.set("consuming");
    ctxvars::generator<std::string> g = layered_rows();
    auto it = g.begin();
    std::printf("  got '%s'; the consumer's stage is now '%s'\n", (*it).c_str(), stage.get().c_str());
    check(stage.get() == "consuming", "the body's set stays in the body");
    stage.set("consuming");
    user.set("bob");
    ++it;
    std::printf("  got '%s'\n", (*it).c_str());
    check(*it == "row 1 for bob at producing", "the body sees the consumer's user, and its own stage");
  });
  return wrong;
}
