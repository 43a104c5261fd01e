// "A simple example of how to use ContextVar" — two sets, two tokens, two resets.
#include <ctxvars/ctxvars.hpp>

#include <iostream>

// Create a new context_var with a name (and no default)
ctxvars::context_var<std::string> var("var");

int main() {
  // Set a new value for the context variable in the current context
  auto token1 = var.set("new value");
  auto token2 = var.set("new value 1");

  // Get the value for the context variable in the current context
  std::cout << var.get() << "\n";  // new value 1

  // Reset the context variable to its previous value
  var.reset(token2);
  std::cout << var.get() << "\n";  // new value
  var.reset(token1);

  // Now the variable has no value again, so var.get() throws lookup_error
  try {
    std::cout << var.get() << "\n";
    return 1;
  } catch (const ctxvars::lookup_error&) {
    std::cout << "Variable has no value\n";
  }
  return 0;
}
