// Compiled with -std=c++17 by the test cxx17_is_refused_with_one_clear_message
// (tests/CMakeLists.txt): must stop at config.hpp's "ctxvars needs C++20",
// before any C++20 code in the headers below reports its own errors.
#include "ctxvars/thread_pool.hpp"  // <coroutine> would complain first if config.hpp came second
#include "ctxvars/task.hpp"
#include "ctxvars/ctxvars.hpp"

int main() { return 0; }
