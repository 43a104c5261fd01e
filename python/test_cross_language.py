"""C++ called from Python sees the calling asyncio task's values (python/example).

50 concurrent tasks each set a request id from Python (through the C++ variable
exposed with ctxvars::python::expose), call into C++ across awaits and the C++
side logs each task's own id every time; an id C++ sets is seen by that task's
Python code afterwards, and by no other task.
"""
import asyncio
import random
import threading
import unittest

import ctxvars
import request_log


class CrossLanguage(unittest.TestCase):
    def test_fifty_tasks_each_see_their_own_request_id_in_cpp(self):
        lines = []

        async def handle(i):
            tok = request_log.request_id.set(f"req-{i}")
            for step in range(3):
                await asyncio.sleep(random.uniform(0, 0.002))
                lines.append((i, request_log.log_line(f"step {step}")))
                lines.append((i, await asyncio.to_thread(request_log.slow_log_line, "in a thread")))
            request_log.assign_request_id(f"cpp-{i}")  # a set made by C++
            await asyncio.sleep(0)
            seen = request_log.request_id.get()
            request_log.request_id.reset(tok)
            return seen, request_log.request_id.get()

        async def main():
            results = await asyncio.gather(*(handle(i) for i in range(50)))
            return results, request_log.request_id.get()

        results, after = asyncio.run(main())
        self.assertEqual(len(lines), 50 * 6)
        for i, line in lines:
            self.assertRegex(line, rf"^\[req-{i}\] ")
        self.assertEqual(results, [(f"cpp-{i}", "-") for i in range(50)])
        self.assertEqual(after, "-")
        self.assertEqual(request_log.request_id.get(), "-")

    def test_cpp_sees_python_context_run_and_copies(self):
        ctx = ctxvars.Context()
        ctx.run(request_log.request_id.set, "in-ctx")
        self.assertEqual(ctx.run(request_log.log_line, "x"), "[in-ctx] x")
        self.assertEqual(request_log.log_line("x"), "[-] x")
        snap = ctx.copy()
        ctx.run(request_log.assign_request_id, "changed")
        self.assertEqual(snap.run(request_log.log_line, "y"), "[in-ctx] y")
        self.assertEqual(ctx.run(request_log.request_id.get), "changed")

    def test_errors_are_pythons(self):
        tok = request_log.request_id.set("a")
        async def other():
            with self.assertRaises(ValueError):
                request_log.request_id.reset(tok)
        asyncio.run(other())
        request_log.request_id.reset(tok)
        with self.assertRaises(RuntimeError):
            request_log.request_id.reset(tok)
        self.assertEqual(request_log.request_id.get(), "-")

    def test_threads_start_empty(self):
        request_log.request_id.set("main")
        out = []
        t = threading.Thread(target=lambda: out.append(request_log.log_line("t")))
        t.start()
        t.join()
        self.assertEqual(out, ["[-] t"])
        self.assertEqual(request_log.log_line("m"), "[main] m")


if __name__ == "__main__":
    unittest.main()
