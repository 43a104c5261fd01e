"""Checks beyond CPython's suite: the module is ours, threads, and errors."""
import threading

import ctxvars

assert ctxvars.ContextVar.__module__ == "ctxvars"
v = ctxvars.ContextVar("v", default=0)
seen = []
def worker(n):
    v.set(n)
    seen.append(v.get() == n)
threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
[t.start() for t in threads]
[t.join() for t in threads]
assert all(seen) and len(seen) == 8
assert v.get() == 0, "a thread's sets never reach another thread"

ctx = ctxvars.copy_context()
t = ctx.run(v.set, 5)
assert ctx[v] == 5 and v.get() == 0
try:
    v.reset(t)
except ValueError as e:
    assert "different Context" in str(e)
else:
    raise AssertionError("reset in another context must fail")
print("smoke ok")
