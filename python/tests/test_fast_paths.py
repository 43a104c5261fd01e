"""The module's fast paths (issue 18, section 2) keep the stdlib's behaviour.

ContextVar.get caches the value it found per variable, as CPython does; every way the
current context can change must invalidate it. Each case runs with both modules and
compares, so that a stale cache (or a missed copy) shows as a difference.
"""
import asyncio
import contextvars
import gc
import threading
import unittest

import ctxvars

MODULES = (contextvars, ctxvars)


def both(test):
    """Runs scenario(mod) for both modules and asserts equal results."""
    def run(self):
        results = [test(self, mod) for mod in MODULES]
        self.assertEqual(results[0], results[1])
    run.__name__ = test.__name__
    return run


class GetCache(unittest.TestCase):
    @both
    def test_get_sees_each_set_and_reset_of_the_same_variable(self, mod):
        v = mod.ContextVar("v", default="d")
        out = [v.get()]
        t1 = v.set(1)
        out.append(v.get())
        t2 = v.set(2)
        out.append(v.get())
        v.reset(t2)
        out.append(v.get())
        v.reset(t1)
        out.append(v.get())
        return out

    @both
    def test_get_inside_and_after_run_of_a_copy(self, mod):
        v = mod.ContextVar("v")
        v.set("outer")
        out = [v.get()]
        ctx = mod.copy_context()
        v.set("changed outside")
        out.append(v.get())

        def inside():
            r = [v.get()]
            v.set("inside")
            r.append(v.get())
            return r
        out.append(ctx.run(inside))
        out.append(v.get())
        out.append(ctx.run(v.get))
        out.append(mod.Context().run(v.get, "fallback"))
        out.append(v.get())
        return out

    @both
    def test_a_task_that_never_wrote_reads_then_writes(self, mod):
        v = mod.ContextVar("v")

        async def child():
            first = v.get()          # the parent's value (a Binding the task shares)
            v.set("child")           # the first write binds the task's own context
            second = v.get()
            await asyncio.sleep(0)
            return first, second, v.get()

        async def main():
            v.set("parent")
            before = v.get()
            t = asyncio.ensure_future(child())
            v.set("parent again")    # the parent writes beside the task's copy
            r = await t
            return before, r, v.get()
        return asyncio.run(main())

    @both
    def test_tasks_interleaved_each_see_their_own_value(self, mod):
        v = mod.ContextVar("v", default=None)

        async def worker(i, log):
            v.set(i)
            for _ in range(3):
                log.append((i, v.get()))
                await asyncio.sleep(0)
                log.append((i, v.get()))
            return v.get()

        async def main():
            log = []
            r = await asyncio.gather(*(worker(i, log) for i in range(4)))
            return r, sorted(log), v.get()
        return asyncio.run(main())

    @both
    def test_threads_each_see_their_own_value(self, mod):
        v = mod.ContextVar("v", default="none")
        v.set("main")
        v.get()
        seen = []

        def body():
            seen.append(v.get())
            v.set("thread")
            seen.append(v.get())
        t = threading.Thread(target=body)
        t.start()
        t.join()
        return seen, v.get()

    @both
    def test_a_finalizer_reads_the_value_its_own_release_left(self, mod):
        v = mod.ContextVar("v", default="none")
        seen = []

        class Reads:
            def __del__(self):
                seen.append(v.get())

        v.get()
        v.set(Reads())      # the token (and its old value) dropped at once
        v.get()
        v.set("later")      # the new token holds the Reads object as its old value
        gc.collect()
        seen.append(v.get())
        return seen

    @both
    def test_a_finalizer_that_sets_during_a_set(self, mod):
        v = mod.ContextVar("v", default="none")
        w = mod.ContextVar("w", default="none")
        seen = []

        class Sets:
            def __del__(self):
                w.set("from finalizer")
                seen.append((v.get(), w.get()))

        w.get()
        v.set(Sets())
        tok = v.set("x")
        del tok             # releases the Sets object: its __del__ runs
        seen.append((v.get(), w.get()))
        return seen

    @both
    def test_get_with_a_default_argument_and_lookup_error(self, mod):
        v = mod.ContextVar("v")
        out = [v.get("arg")]
        try:
            v.get()
        except LookupError:
            out.append("LookupError")
        t = v.set(None)
        out.append(v.get("arg"))
        v.reset(t)
        out.append(v.get("arg"))
        return out



class LazyStdlibContext(unittest.TestCase):
    """copy_context() keeps the stdlib mapping and makes the stdlib context at run()."""

    @both
    def test_stdlib_variables_inside_run_of_copies(self, mod):
        sv = contextvars.ContextVar("sv", default="none")
        v = mod.ContextVar("v", default="none")
        sv.set("at copy")
        v.set("at copy")
        ctx = mod.copy_context()
        sv.set("after copy")
        v.set("after copy")
        twin = ctx.copy()            # a copy of a copy that never ran
        out = [ctx.run(lambda: (sv.get(), v.get()))]
        ctx.run(sv.set, "in ctx")
        ctx.run(v.set, "in ctx")
        out.append(ctx.run(lambda: (sv.get(), v.get())))
        out.append(twin.run(lambda: (sv.get(), v.get())))
        out.append(ctx.copy().run(lambda: (sv.get(), v.get())))
        out.append((sv.get(), v.get()))
        out.append(mod.Context().run(lambda: (sv.get(), v.get())))
        return out

    @both
    def test_a_task_created_inside_run_of_a_copy_sees_its_values(self, mod):
        sv = contextvars.ContextVar("sv", default="none")
        v = mod.ContextVar("v", default="none")

        async def child():
            return sv.get(), v.get()

        async def main():
            sv.set("copied")
            v.set("copied")
            ctx = mod.copy_context()
            sv.set("later")
            v.set("later")
            task = ctx.run(asyncio.ensure_future, child())
            return await task
        return asyncio.run(main())

    @both
    def test_running_a_copy_twice_at_once_is_refused(self, mod):
        ctx = mod.copy_context()

        def inner():
            try:
                ctx.run(lambda: None)
            except RuntimeError as e:
                return "RuntimeError" + str(e).split(":")[0]
            return "entered twice"
        return ctx.run(inner)



class ReadersBesideCppWrites(unittest.TestCase):
    """The module's contexts skip the core's writer lock unless C++ code holds them
    (calling_context): Python readers on other threads must still lock while C++ writes
    without the GIL, and see every write once the call returned."""

    def test_python_reads_a_context_that_cpp_writes_without_the_gil_on_another_thread(self):
        try:
            import bridge_ext
        except ImportError:
            self.skipTest("bridge_ext not built")
        v = ctxvars.ContextVar("v")
        ctx = ctxvars.Context()
        ctx.run(v.set, "python")
        stop = threading.Event()
        seen = []

        def read():
            while not stop.is_set():
                c = ctx.copy()
                seen.append((len(ctx), ctx.get(v), v in ctx, c.run(v.get), len(list(ctx.items()))))
                gc.collect(0)

        def write_in_ctx(n):
            v.set("python %d" % n)
            bridge_ext.write_many(20000)   # C++ writes, without the GIL
            return bridge_ext.tenant()

        t = threading.Thread(target=read)
        t.start()
        try:
            results = [ctx.run(write_in_ctx, i) for i in range(10)]
        finally:
            stop.set()
            t.join()
        self.assertEqual(results, ["t19999"] * 10)
        self.assertEqual(ctx.run(v.get), "python 9")
        self.assertTrue(seen)
        self.assertTrue(all(r[0] == 1 and r[2] and r[4] == 1 for r in seen), seen[:3])


if __name__ == "__main__":
    unittest.main()
