"""Fails if the README's C++ example differs from examples/quickstart.cpp."""
import pathlib
import re
import sys

root = pathlib.Path(__file__).resolve().parent.parent
block = re.search(r"```cpp\n(.*?)```", (root / "README.md").read_text(), re.S).group(1)
source = (root / "examples" / "quickstart.cpp").read_text().split("\n", 1)[1]  # minus the title comment
if block != source:
    sys.exit("README.md's example and examples/quickstart.cpp differ")
print("README example matches examples/quickstart.cpp")
