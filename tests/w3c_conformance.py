#!/usr/bin/env python3
"""Runs the W3C Trace Context test suite against ctxvars_w3c_service (issue 19).

  w3c_conformance.py <ctxvars_w3c_service> <suite folder>

Starts the service on a free port of 127.0.0.1, runs the suite's test.py at
SPEC_LEVEL=2 STRICT_LEVEL=2 (its harness on another free port), stops the
service, and fails unless every test is ok. Exits 77 (ctest: skipped) when
the suite's folder or Debian's python3-aiohttp is missing.
"""
import os
import re
import socket
import subprocess
import sys
import time

SKIP = 77


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    service, suite = sys.argv[1], os.path.abspath(sys.argv[2])
    if not os.path.isfile(os.path.join(suite, "test.py")):
        print(f"SKIPPED: the W3C Trace Context suite is not at {suite}")
        return SKIP
    python = "/usr/bin/python3"
    if subprocess.run([python, "-c", "import aiohttp"], capture_output=True).returncode != 0:
        print("SKIPPED: the suite needs python3-aiohttp (scripts/install-deps.sh installs it)")
        return SKIP

    svc = subprocess.Popen([service, "--port", "0"], stdout=subprocess.PIPE, text=True)
    try:
        line = svc.stdout.readline()
        m = re.search(r"http://127\.0\.0\.1:(\d+)/test", line)
        if not m:
            print(f"FAILED: the service did not say where it listens: {line!r}")
            return 1
        endpoint = m.group(0)
        env = dict(os.environ, SPEC_LEVEL="2", STRICT_LEVEL="2", HARNESS_PORT=str(free_port()),
                   PYTHONDONTWRITEBYTECODE="1")
        env.pop("HARNESS_DEBUG", None)
        start = time.monotonic()
        run = subprocess.run([python, os.path.join(suite, "test.py"), endpoint], cwd=suite, env=env,
                             capture_output=True, text=True, timeout=300)
        out = run.stdout + run.stderr
        print(out)
        ran = re.search(r"^Ran (\d+) tests?", out, re.MULTILINE)
        # unittest's verbose lines end with "... ok" (the docstring may come between).
        results = re.findall(r"\.\.\. (.+)$", out, re.MULTILINE)
        ok = [r for r in results if r == "ok"]
        if (run.returncode != 0 or not ran or int(ran.group(1)) == 0 or len(ok) != int(ran.group(1))
                or not re.search(r"^OK$", out, re.MULTILINE)):
            print(f"FAILED: {len(ok)} of {ran.group(1) if ran else '?'} tests ok (exit {run.returncode})")
            return 1
        print(f"w3c_conformance: all {len(ok)} tests ok at SPEC_LEVEL=2 STRICT_LEVEL=2 "
              f"in {time.monotonic() - start:.1f} s")
        return 0
    finally:
        svc.terminate()
        try:
            svc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            svc.kill()
            svc.wait()


if __name__ == "__main__":
    sys.exit(main())
