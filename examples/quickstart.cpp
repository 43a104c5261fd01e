// The README's example: a request id that follows the work, not the thread.
#include <ctxvars/ctxvars.hpp>
#include <iostream>
#include <thread>

ctxvars::context_var<std::string> request_id("request_id", "-");

void log(const std::string& msg) { std::cout << "[" << request_id.get() << "] " << msg << "\n"; }

void handle(const std::string& id) {
  auto guard = request_id.scoped_set(id);        // undone at the end of the scope
  log("handling");
  std::jthread worker(ctxvars::bind([] {          // the thread starts in a copy of our context
    log("in a worker thread");
  }));
}

int main() {
  ctxvars::copy_context().run(handle, "req-1");   // each request in its own context
  ctxvars::copy_context().run(handle, "req-2");
  log("outside any request");                     // prints "[-] ..."
}
