// A logger that prints every variable of the current context (iteration with
// names and typed values): request-scoped log fields without passing them around.
#include <ctxvars/ctxvars.hpp>

#include <iostream>
#include <sstream>
#include <string>

ctxvars::context_var<std::string> user("user");
ctxvars::context_var<int> request_id("request_id");
ctxvars::context_var<double> deadline_s("deadline_s");

std::string fields() {
  std::ostringstream out;
  for (auto e : ctxvars::copy_context()) {
    out << " " << e.name() << "=";
    if (auto* s = e.get_if<std::string>()) out << '"' << *s << '"';
    else if (auto* i = e.get_if<int>()) out << *i;
    else if (auto* d = e.get_if<double>()) out << *d;
    else out << "<" << e.type().name() << ">";
  }
  return out.str();
}

void log(const std::string& msg) { std::cout << msg << " |" << fields() << "\n"; }

int main() {
  auto g1 = request_id.scoped_set(17);
  auto g2 = user.scoped_set("ann");
  log("request started");
  {
    auto g3 = deadline_s.scoped_set(2.5);
    log("calling the database");
  }
  log("request done");
  return ctxvars::copy_context().size() == 2 ? 0 : 1;
}
