"""ctxvars vs the stdlib's contextvars, from Python, in one process.

timeit loops (best of 15 repeats, timed in thread CPU time) for ContextVar.get, set, set+reset and
copy_context().run, each measured for both modules in the same run; prints a
Markdown table with the ratio ctxvars / stdlib (target: at most 1.5).
Run: PYTHONPATH=build/release/python python3.11 python/bench_python.py
"""
import asyncio
import contextvars
import sys
import time
import timeit

import ctxvars


def cases(mod):
    v = mod.ContextVar("v", default=0)
    v.set(1)
    get = v.get
    set_ = v.set
    reset = v.reset
    def f():
        return None
    copy_context = mod.copy_context
    return {
        "ContextVar.get()": ("get()", {"get": get}),
        "ContextVar.set(x)": ("set(2)", {"set": set_}),
        "set(x) + reset(token)": ("reset(set(2))", {"set": set_, "reset": reset}),
        "copy_context()": ("copy_context()", {"copy_context": copy_context}),
        "copy_context().run(f)": ("copy_context().run(f)", {"copy_context": copy_context, "f": f}),
    }


def measure(stmt, env, number):
    # CPU time of this thread, not wall time: on a loaded machine a run waits for a
    # CPU for a share of the time that has nothing to do with what is measured.
    t = timeit.repeat(stmt, globals=env, number=number, repeat=15, timer=time.thread_time)
    return min(t) / number * 1e9


def table(where, number):
    rows = []
    std, ours = cases(contextvars), cases(ctxvars)
    for name in std:
        s = measure(*std[name], number)
        o = measure(*ours[name], number)
        rows.append(f"| {name} | {where} | {s:.0f} ns | {o:.0f} ns | {o / s:.2f}x |")
    return rows


def guard_cost(number):
    """The cost of calling_context: one C++ call with and without the guard."""
    try:
        import request_log
    except ImportError:
        return []
    request_log.request_id.set("r")
    plain = measure("f('x')", {"f": request_log.log_line_unguarded}, number)
    guarded = measure("f('x')", {"f": request_log.log_line}, number)
    rows = [f"| C++ call, no guard / with `calling_context` | {plain:.0f} ns | {guarded:.0f} ns | +{guarded - plain:.0f} ns |"]
    n = 10_000_000
    get = min(request_log.ns_per_get(n) for _ in range(5))
    tl = min(request_log.ns_per_thread_local_read(n) for _ in range(5))
    rows.append(f"| C++ `peek()` inside the call vs a `thread_local` in the extension | {tl:.2f} ns | {get:.2f} ns | {get / tl:.1f}x |")
    return rows


def main():
    number = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    print("| operation | where | contextvars | ctxvars | ratio |")
    print("|---|---|---|---|---|")
    for r in table("top level", number):
        print(r)

    async def in_task():
        return table("asyncio task", number)
    for r in asyncio.run(in_task()):
        print(r)
    rows = guard_cost(number)
    if rows:
        print()
        print("| call | plain | guarded | guard |")
        print("|---|---|---|---|")
        for r in rows:
            print(r)


if __name__ == "__main__":
    main()
