// "How to use ContextVar": define, set, get, and delete (reset) a value.
#include <ctxvars/ctxvars.hpp>

#include <iostream>

// Define a context_var with a name and an optional default value
ctxvars::context_var<int> my_var("my_var", 42);
ctxvars::context_var<int> no_default("no_default");

int main() {
  // Set a new value for the context_var in the current context
  auto token = my_var.set(100);

  // Get the value of the context_var in the current context
  std::cout << my_var.get() << "\n";  // 100

  // Reset the context_var to its previous value. It had none, so the value is
  // removed from the context and get() falls back to the default.
  my_var.reset(token);
  std::cout << my_var.get() << "\n";  // 42 (the default)
  std::cout << std::boolalpha << my_var.try_get().has_value() << "\n";  // true: the default

  // Without a default, get() on a variable with no value throws lookup_error
  // (the blog post's LookupError; its my_var example has a default, so there
  // Python returns 42 as well).
  auto t = no_default.set(1);
  no_default.reset(t);
  try {
    std::cout << no_default.get() << "\n";
    return 1;
  } catch (const ctxvars::lookup_error&) {
    std::cout << "Variable has no value\n";
  }
  return my_var.get() == 42 ? 0 : 1;
}
