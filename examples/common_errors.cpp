// "Common errors when working with ContextVar", each with its exception.
#include <ctxvars/ctxvars.hpp>

#include <iostream>

ctxvars::context_var<int> a("a");
ctxvars::context_var<int> b("b");

int main() {
  int caught = 0;
  // 1. get() with no value and no default: lookup_error (Python: LookupError).
  try {
    (void)a.get();
  } catch (const ctxvars::lookup_error& e) {
    std::cout << "lookup_error: " << e.what() << "\n";
    ++caught;
  }
  // 2. reset() with a token created by another variable: foreign_token_error (ValueError).
  auto ta = a.set(1);
  try {
    b.reset(ta);
  } catch (const ctxvars::foreign_token_error& e) {
    std::cout << "foreign_token_error: " << e.what() << "\n";
    ++caught;
  }
  // 3. reset() with a token created in a different context: foreign_token_error (ValueError).
  auto tb = ctxvars::context().run([] { return b.set(2); });
  try {
    b.reset(tb);
  } catch (const ctxvars::foreign_token_error& e) {
    std::cout << "foreign_token_error: " << e.what() << "\n";
    ++caught;
  }
  // 4. reset() with a token already used: used_token_error (RuntimeError).
  a.reset(ta);
  try {
    a.reset(ta);
  } catch (const ctxvars::used_token_error& e) {
    std::cout << "used_token_error: " << e.what() << "\n";
    ++caught;
  }
  // 5. Entering a context that is already entered: context_in_use_error (RuntimeError).
  ctxvars::context c;
  try {
    c.run([&] { c.run([] {}); });
  } catch (const ctxvars::context_in_use_error& e) {
    std::cout << "context_in_use_error: " << e.what() << "\n";
    ++caught;
  }
  // Each failure changed nothing:
  std::cout << "a has a value: " << std::boolalpha << a.try_get().has_value() << "\n";  // false
  return caught == 5 && !a.try_get() ? 0 : 1;
}
