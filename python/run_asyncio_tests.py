"""Runs CPython's own asyncio tests that involve contextvars against ctxvars.

The stock files of Lib/test/test_asyncio are loaded with `contextvars` replaced
by `ctxvars` in the test code only (asyncio itself is untouched and keeps using
the stdlib): `import contextvars` becomes `import ctxvars as contextvars` and
`from contextvars import ContextVar` becomes `from ctxvars import ContextVar`.
Runs, from test_tasks.py, every test named `*context*` in every Task/Future
implementation class (C and Python Tasks); and test_threads.py,
test_taskgroups.py and test_runners.py whole. Prints `N passed, N failed,
N skipped` and exits non-zero on failure.
"""
import os
import sys
import unittest

import ctxvars
from cpython_suite import load_substituted, run_and_exit
import test.test_asyncio  # noqa: F401  (the package the files import from)

DIR = sys.argv[1] if len(sys.argv) > 1 else "/usr/lib/python3.11/test/test_asyncio"
FILES = {  # file: test-name filter (None: every test)
    "test_tasks.py": "context",
    "test_threads.py": None,
    "test_taskgroups.py": None,
    "test_runners.py": None,
}
SUBSTITUTIONS = [
    ("\nimport contextvars\n", "\nimport ctxvars as contextvars\n"),
    ("\nfrom contextvars import ContextVar\n", "\nfrom ctxvars import ContextVar\n"),
]

suite = unittest.TestSuite()
uses = 0
for name, pattern in FILES.items():
    path = os.path.join(DIR, name)
    with open(path, encoding="utf-8") as f:
        text = f.read()
    n = 0
    for old, new in SUBSTITUTIONS:
        n += text.count(old)
        text = text.replace(old, new)
    if n != 1:
        sys.exit(f"{name} changed: expected one contextvars import, found {n}")
    modname = "test.test_asyncio." + name[:-3] + "_on_ctxvars"
    module = load_substituted(path, text, modname, package="test.test_asyncio")
    imported = getattr(module, "contextvars", None) or getattr(module, "ContextVar", None)
    assert imported in (ctxvars, ctxvars.ContextVar), f"{name} must use ctxvars"
    loader = unittest.TestLoader()
    if pattern:
        loader.testNamePatterns = [f"*{pattern}*"]
    tests = loader.loadTestsFromModule(module)
    suite.addTests(tests)
    uses += tests.countTestCases()

run_and_exit(suite)
