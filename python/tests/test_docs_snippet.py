"""docs/python.md's C++-extension snippet compiles verbatim and works (issue 18, section 4).

   test_docs_snippet.py INCLUDE_DIR LIB_DIR
Extracts the first ```cpp block of "## C++ called from Python", builds it as the
extension module it declares with g++ against the project's headers and
libctxvars_shared.so in LIB_DIR, and calls it from Python beside the ctxvars module.
"""
import os
import re
import subprocess
import sys
import sysconfig
import tempfile
import textwrap
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
DOC = os.path.join(HERE, "..", "..", "docs", "python.md")
INCLUDE_DIR, LIB_DIR = sys.argv[1:3] if len(sys.argv) >= 3 else ("include", "build/dev")


def snippet():
    text = open(DOC, encoding="utf-8").read()
    section = text[text.index("## C++ called from Python"):]
    return re.search(r"```cpp\n(.*?)```", section, re.S).group(1)


class DocsSnippet(unittest.TestCase):
    def test_the_cpp_extension_snippet_compiles_verbatim_and_runs(self):
        code = snippet()
        name = re.search(r"PYBIND11_MODULE\((\w+),", code).group(1)
        with tempfile.TemporaryDirectory() as tmp:
            src = os.path.join(tmp, "snippet.cpp")
            with open(src, "w") as f:
                f.write(code)
            out = os.path.join(tmp, name + sysconfig.get_config_var("EXT_SUFFIX"))
            cmd = ["g++", "-std=c++20", "-O0", "-shared", "-fPIC", "-fvisibility=hidden",
                   "-Wall", "-Wextra", "-Werror", "-I" + os.path.abspath(INCLUDE_DIR),
                   "-I" + sysconfig.get_paths()["include"], src, "-L" + os.path.abspath(LIB_DIR),
                   "-lctxvars_shared", "-Wl,-rpath," + os.path.abspath(LIB_DIR), "-o", out]
            r = subprocess.run(cmd, capture_output=True, text=True)
            self.assertEqual(r.returncode, 0, r.stderr)
            check = textwrap.dedent(f"""
                import asyncio, ctxvars, {name} as ext
                async def task(i):
                    tok = ext.request_id.set(f"req-{{i}}")
                    await asyncio.sleep(0)
                    line = ext.log_line("hi")
                    assert ext.request_id.get() == f"req-{{i}}"
                    ext.request_id.reset(tok)
                    return line
                async def main():
                    return await asyncio.gather(*(task(i) for i in range(3)))
                assert asyncio.run(main()) == [f"[req-{{i}}] hi" for i in range(3)]
                assert ext.log_line("x") == "[-] x" and ext.request_id.get() == "-"
                print("ok")
            """)
            env = dict(os.environ, PYTHONPATH=tmp + os.pathsep + os.environ.get("PYTHONPATH", ""))
            r = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, env=env)
            self.assertEqual((r.returncode, r.stdout.strip()), (0, "ok"), r.stderr)

    def test_without_the_ctxvars_module_the_error_says_what_to_install(self):
        # The example extension, imported where ctxvars is not on the path: its first
        # guarded call cannot import ctxvars.
        build_python = os.environ.get("PYTHONPATH", "").split(os.pathsep)[0]
        with tempfile.TemporaryDirectory() as tmp:
            for f in os.listdir(build_python):
                if f.startswith("request_log."):
                    os.symlink(os.path.join(build_python, f), os.path.join(tmp, f))
            check = textwrap.dedent("""
                import sys
                sys.modules["ctxvars"] = None  # not installed
                import request_log
                try:
                    request_log.log_line("x")
                except ImportError as e:
                    print(e)
            """)
            env = dict(os.environ, PYTHONPATH=tmp)
            r = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, env=env)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn("needs the `ctxvars` Python module: install it", r.stdout)


if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1])
