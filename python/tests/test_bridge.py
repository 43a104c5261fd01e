"""C++ called from Python under calling_context (python/tests/bridge_ext.cpp).

Regression tests for issue 18, section 1: C++ writes beside copies taken during the
same call (bug 1), C++ writing without the GIL while the collector runs (bug 2),
several exposed variables of one C++ type (bug 3), C++ values in the Python view of
a context (bug 4).
"""
import asyncio
import gc
import sys
import threading
import unittest

import ctxvars
import bridge_ext
import request_log  # exposes a std::string variable too (bug 3: two extensions)


class WritesBesideCopies(unittest.TestCase):
    """Bug 1: a C++ set after a callback that copied the context must not reach the copy."""

    def test_a_copy_taken_by_a_callback_keeps_the_value_before_the_next_cpp_set(self):
        seen = {}

        def callback():
            seen["copy"] = ctxvars.copy_context()

        def body():
            bridge_ext.set_call_set("before", callback, "after")
            return bridge_ext.tenant()

        self.assertEqual(ctxvars.Context().run(body), "after")
        self.assertEqual(seen["copy"].run(bridge_ext.tenant), "before")
        self.assertEqual(seen["copy"].run(bridge_ext.tenant_var.get), "before")

    def test_a_task_created_by_a_callback_sees_the_value_before_the_next_cpp_set(self):
        async def child():
            await asyncio.sleep(0)
            return bridge_ext.tenant(), bridge_ext.tenant_var.get()

        async def main():
            tasks = []
            bridge_ext.set_call_set("before", lambda: tasks.append(asyncio.ensure_future(child())), "after")
            here = bridge_ext.tenant()
            return here, await tasks[0]

        self.assertEqual(asyncio.run(main()), ("after", ("before", "before")))

    def test_a_task_created_by_a_callback_at_top_level_of_a_task_that_wrote_before(self):
        async def child():
            return bridge_ext.tenant()

        async def main():
            bridge_ext.set_tenant("first")  # the task owns its context now
            tasks = []
            bridge_ext.set_call_set("before", lambda: tasks.append(asyncio.ensure_future(child())), "after")
            return bridge_ext.tenant(), await tasks[0]

        self.assertEqual(asyncio.run(main()), ("after", "before"))


class WritesWithoutTheGil(unittest.TestCase):
    """Bug 2: the collector traverses a task's context while C++ writes it without the GIL."""

    def test_collections_beside_cpp_writes_without_the_gil_do_not_crash(self):
        v = ctxvars.ContextVar("v")

        class Box:
            pass

        def work():
            # Python values in the context C++ writes, unshared: the collector walks them.
            for _ in range(40):
                b = Box()
                b.me = b
                v.set(b)
            bridge_ext.write_many(200000)  # without the GIL
            return bridge_ext.tenant()

        async def main():
            stop = threading.Event()

            def collect():
                while not stop.is_set():
                    gc.collect()

            t = threading.Thread(target=collect)
            t.start()
            try:
                return await asyncio.gather(*(asyncio.to_thread(work) for _ in range(4)))
            finally:
                stop.set()
                t.join()

        self.assertEqual(asyncio.run(main()), ["t199999"] * 4)


class SharedContextsBesideCppWrites(unittest.TestCase):
    """Bug 5 with bug 2: the collector counts the layers a task's context shares with
    copies (Python values in cycles through them) while C++ writes that context without
    the GIL; it must never report a live value as garbage."""

    def test_values_in_cycles_through_copies_stay_whole_while_cpp_writes_and_collections_run(self):
        v = ctxvars.ContextVar("v")

        class Request:
            pass

        def work(k):
            reqs = []
            for i in range(30):
                r = Request()
                r.data = list(range(k, k + 8))
                v.set(r)
                r.ctx = ctxvars.copy_context()  # r -> a copy sharing the layers -> r
                reqs.append(r)
            snap = ctxvars.copy_context()
            bridge_ext.write_many(30000)  # without the GIL, in the context the copies share
            whole = all(r.data == list(range(k, k + 8)) and r.ctx[v] is r for r in reqs)
            return whole, v.get() is reqs[-1], snap[v] is reqs[-1], bridge_ext.tenant()

        async def main():
            stop = threading.Event()

            def collect():
                while not stop.is_set():
                    gc.collect()

            collectors = [threading.Thread(target=collect) for _ in range(2)]
            for t in collectors:
                t.start()
            try:
                return await asyncio.gather(*(asyncio.to_thread(work, k) for k in range(6)))
            finally:
                stop.set()
                for t in collectors:
                    t.join()

        for _ in range(2):
            self.assertEqual(asyncio.run(main()), [(True, True, True, "t29999")] * 6)
        info = ctxvars._gc_info()
        self.assertTrue(info["collector_found"])
        self.assertGreater(info["exact_passes"], 0)


class ExposedVariablesOfOneType(unittest.TestCase):
    """Bug 3: expose() of a second std::string variable (here, and in request_log)."""

    def test_two_string_variables_of_one_module_and_a_third_of_another_are_independent(self):
        async def main():
            t1 = bridge_ext.tenant_var.set("acme")
            t2 = bridge_ext.region_var.set("eu")
            t3 = request_log.request_id.set("req-1")
            got = (bridge_ext.tenant_var.get(), bridge_ext.region_var.get(), request_log.request_id.get())
            bridge_ext.region_var.reset(t2)
            with self.assertRaises(ValueError):
                bridge_ext.tenant_var.reset(t3)  # a token of another variable
            bridge_ext.tenant_var.reset(t1)
            request_log.request_id.reset(t3)
            return got, (bridge_ext.tenant_var.get(), bridge_ext.region_var.get(), request_log.request_id.get())

        self.assertEqual(asyncio.run(main()), (("acme", "eu", "req-1"), ("-", "-", "-")))
        self.assertEqual(bridge_ext.region_var.name, "region")
        self.assertEqual(request_log.request_id.name, "request_id")


class CppValuesInAPythonView(unittest.TestCase):
    """Bug 4: a context holding C++ values is a mapping of its Python variables only."""

    def test_len_iteration_keys_items_in_and_equality_agree(self):
        v = ctxvars.ContextVar("v")

        def body():
            v.set(1)
            bridge_ext.set_tenant("acme")  # a C++ value in the same context
            return ctxvars.copy_context()

        a = ctxvars.Context().run(body)
        b = ctxvars.Context().run(lambda: (v.set(1), ctxvars.copy_context())[1])
        self.assertEqual(a.run(bridge_ext.tenant), "acme")
        self.assertEqual(len(a), len(list(a)))
        self.assertEqual(len(a), 1)
        self.assertEqual(list(a.keys()), [v])
        self.assertEqual(list(a.items()), [(v, 1)])
        self.assertEqual(list(a.values()), [1])
        self.assertIn(v, a)
        self.assertEqual(a == b, b == a)
        self.assertTrue(a == b)
        self.assertFalse(a != b)
        only_cpp = ctxvars.Context().run(lambda: (bridge_ext.set_tenant("x"), ctxvars.copy_context())[1])
        self.assertEqual((len(only_cpp), list(only_cpp)), (0, []))
        self.assertEqual(only_cpp, ctxvars.Context())
        self.assertEqual(ctxvars.Context(), only_cpp)


if __name__ == "__main__":
    unittest.main()
