"""Runs CPython's own Lib/test/test_context.py against the ctxvars module.

The stock file is loaded unchanged but for its two imports: `contextvars`
becomes `ctxvars`, and `_testcapi.hamt` becomes `ctxvars.hamt`. Prints the
summary line `N passed, N failed, N skipped` and exits non-zero on failure.
"""
import sys
import unittest

import ctxvars
from cpython_suite import load_substituted, run_and_exit

SOURCE = sys.argv[1] if len(sys.argv) > 1 else "/usr/lib/python3.11/test/test_context.py"

with open(SOURCE, encoding="utf-8") as f:
    text = f.read()
replacements = [
    ("import contextvars\n", "import ctxvars as contextvars\n"),
    ("    from _testcapi import hamt\n", "    from ctxvars import hamt\n"),
]
for old, new in replacements:
    if text.count(old) != 1:
        sys.exit(f"test_context.py changed: cannot substitute {old.strip()!r}")
    text = text.replace(old, new)

module = load_substituted(SOURCE, text, "test_context_on_ctxvars")

assert module.contextvars is ctxvars, "the test must run against ctxvars"
assert module.hamt is ctxvars.hamt, "the HAMT tests must run against ctxvars.hamt"

run_and_exit(unittest.defaultTestLoader.loadTestsFromModule(module))
