"""What the two CPython-suite runners share (run_test_context.py,
run_asyncio_tests.py): loading a stock test file as a module after textual
substitutions, and running a suite with a one-line summary."""
import sys
import types
import unittest


def load_substituted(path, text, modname, package=None):
    """Executes `text` (the file at `path`, already substituted) as module `modname`."""
    module = types.ModuleType(modname)
    module.__file__ = path
    if package:
        module.__package__ = package
    sys.modules[modname] = module
    exec(compile(text, path, "exec"), module.__dict__)
    return module


def run_and_exit(suite):
    """Runs `suite`, prints `N passed, N failed, N skipped`, exits 0 only if all passed."""
    result = unittest.TextTestRunner(verbosity=2, stream=sys.stdout).run(suite)
    failed = len(result.failures) + len(result.errors) + len(result.unexpectedSuccesses)
    skipped = len(result.skipped)
    passed = result.testsRun - failed - skipped
    print(f"{passed} passed, {failed} failed, {skipped} skipped")
    sys.exit(0 if failed == 0 and result.testsRun > 0 else 1)
