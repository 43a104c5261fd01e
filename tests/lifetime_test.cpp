// Thread exit and static destruction: code that still uses variables then must
// not crash (ASan turns a use-after-free here into a failure).
#include "ctxvars/ctxvars.hpp"

#include <gtest/gtest.h>

#include <cstdlib>
#include <string>
#include <thread>

using namespace ctxvars;

namespace {

context_var<std::string>& static_var() {
  static context_var<std::string> v("static_var", "default");
  return v;
}

struct uses_var_at_thread_exit {
  std::string* seen = nullptr;
  bool set_in_dtor = false;
  ~uses_var_at_thread_exit() {
    if (seen) *seen = static_var().get();
    if (set_in_dtor) {
      auto t = static_var().set("late");
      *seen += "|" + static_var().get();
      static_var().reset(t);
    }
  }
};

TEST(Lifetime, AThreadLocalDestructorCanGetAfterTheThreadsContextIsGone) {
  std::string seen;
  std::thread([&] {
    // Constructed BEFORE the thread's context exists, so destroyed AFTER it.
    thread_local uses_var_at_thread_exit probe;
    probe.seen = &seen;
    (void)static_var().set("value");
    EXPECT_EQ(static_var().get(), "value");
  }).join();
  EXPECT_EQ(seen, "default");
}

TEST(Lifetime, AThreadLocalDestructorCanSetDuringThreadExit) {
  std::string seen;
  std::thread([&] {
    thread_local uses_var_at_thread_exit probe;
    probe.seen = &seen;
    probe.set_in_dtor = true;
    (void)static_var().set("value");
  }).join();
  EXPECT_EQ(seen, "default|late");
}

TEST(Lifetime, AThreadLocalDestroyedBeforeTheContextSeesItsValue) {
  std::string seen;
  std::thread([&] {
    (void)static_var().set("value");  // context first: destroyed last
    thread_local uses_var_at_thread_exit probe;
    probe.seen = &seen;
  }).join();
  EXPECT_EQ(seen, "value");
}

// Runs during static destruction, after main's thread_locals are gone.
struct at_exit_reader {
  at_exit_reader() { (void)static_var(); }  // the variable outlives this reader
  ~at_exit_reader() {
    if (static_var().get() != "default") std::abort();
  }
} reader_instance;

TEST(Lifetime, StaticDestructorsRunAfterTheMainThreadsContext) {
  (void)static_var().set("main");  // leaves a value in the main thread's context
  EXPECT_EQ(static_var().get(), "main");
}

}  // namespace
