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
# Reference cycles through a hamt or a context are collected.
import gc
import weakref

class Box:
    pass

h = ctxvars.hamt()
b = Box()
h = h.set("k", b)
b.h = h  # cycle: hamt -> Box -> hamt
ref = weakref.ref(b)
del h, b
gc.collect()
assert ref() is None, "cycle through a hamt not collected"

c = ctxvars.Context()
w = ctxvars.ContextVar("w")
b = Box()
c.run(w.set, b)
b.c = c  # cycle: Context -> Box -> Context
ref = weakref.ref(b)
del c, b
gc.collect()
assert ref() is None, "cycle through a Context not collected"
print("smoke ok")
