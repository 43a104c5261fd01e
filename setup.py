"""`pip install .`: the ctxvars Python module, built by the project's own CMake build.

    python3 -m venv --system-site-packages V
    V/bin/pip install --no-build-isolation --no-index .

Backend: Debian's setuptools (python3-setuptools, python3-wheel; pyproject.toml). No compiler
flags live here: build_ext configures CMake with CTXVARS_WITH_PYTHON=ON (Release, no tests,
examples or benchmarks), builds the targets ctxvars, ctxvars_shared and ctxvars_python, and
`cmake --install`s them into a staging prefix. The wheel then holds
  - the module `ctxvars.cpython-3XX-<arch>.so` (platlib, i.e. <prefix>/lib/python3.X/site-packages),
  - as data files (installed under the prefix pip installs to: the venv, ~/.local with --user,
    /usr/local system-wide): lib/libctxvars_shared.so* (the core the module and every C++
    extension share), lib/libctxvars.a, include/ctxvars/, lib/cmake/ctxvars/ (the CMake
    package, relocatable) and lib/pkgconfig/ctxvars*.pc (prefix=${pcfiledir}/../..).
The module finds the core through its RUNPATH $ORIGIN/../.. (site-packages -> lib); a C++
extension finds everything with find_package(ctxvars) under that prefix
(`python -c 'import sysconfig; print(sysconfig.get_path("data"))'`); docs/python.md.

Build files stay under build/pip/ of the source tree (ignored by .gitignore): setuptools'
build and bdist directories, the egg-info, and the CMake build (build/pip/temp.*/cmake,
incremental on the next `pip install .`). Environment: CMAKE_BUILD_PARALLEL_LEVEL (jobs;
default: every CPU), CMAKE_GENERATOR (default Ninja when installed), CXX.
"""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.command.install import install

from distutils.command.install_data import install_data  # setuptools' copy of distutils
from distutils.errors import DistutilsSetupError

HERE = Path(__file__).resolve().parent
BUILD_BASE = HERE / "build" / "pip"
PYVER = f"python{sys.version_info.major}.{sys.version_info.minor}"
# Where CMake installs the module in the staging prefix; taken out of the data files.
MODULE_DIR = f"lib/{PYVER}/site-packages"


def project_version():
    text = (HERE / "CMakeLists.txt").read_text()
    match = re.search(r"project\(ctxvars\s+VERSION\s+([0-9.]+)", text)
    if not match:
        raise RuntimeError("setup.py: no project(ctxvars VERSION x.y.z) in CMakeLists.txt")
    return match.group(1)


class CMakeBuild(build_ext):
    """Builds the `ctxvars` extension (and the core) with CMake; stages the install."""

    def stage_dir(self):
        return Path(self.build_temp).resolve() / "stage"

    def build_extension(self, ext):
        if self.inplace or getattr(self, "editable_mode", False):
            # The module finds its core at $ORIGIN/../.. and the core is a data file: an
            # in-place module (in the source tree) would find neither.
            raise DistutilsSetupError(
                "ctxvars: editable installs (pip install -e) and build_ext --inplace are not "
                "supported; use `pip install .`, or the CMake build with "
                "PYTHONPATH=build/dev/python (docs/python.md)")
        build_dir = Path(self.build_temp).resolve() / "cmake"
        stage = self.stage_dir()
        cache = build_dir / "CMakeCache.txt"
        if cache.exists():
            # A build directory configured for another source tree (a moved or copied
            # checkout) would make CMake refuse: start afresh.
            home = re.search(r"(?m)^CMAKE_HOME_DIRECTORY:INTERNAL=(.*)$", cache.read_text())
            if not home or Path(home.group(1)).resolve() != HERE:
                shutil.rmtree(build_dir)
        build_dir.mkdir(parents=True, exist_ok=True)
        configure = ["cmake", "-S", str(HERE), "-B", str(build_dir),
                     f"-DPython_EXECUTABLE={sys.executable}",
                     "-DCMAKE_BUILD_TYPE=Release",
                     f"-DCMAKE_INSTALL_PREFIX={stage}",
                     "-DCMAKE_INSTALL_LIBDIR=lib",
                     "-DCMAKE_INSTALL_INCLUDEDIR=include",
                     f"-DCTXVARS_PYTHON_INSTALL_DIR={MODULE_DIR}",
                     "-DCTXVARS_WITH_PYTHON=ON", "-DCTXVARS_INSTALL=ON",
                     "-DCTXVARS_BUILD_TESTS=OFF", "-DCTXVARS_BUILD_EXAMPLES=OFF",
                     "-DCTXVARS_BUILD_BENCHMARKS=OFF"]
        if (not os.environ.get("CMAKE_GENERATOR") and shutil.which("ninja")
                and not cache.exists()):
            configure += ["-G", "Ninja"]
        jobs = os.environ.get("CMAKE_BUILD_PARALLEL_LEVEL") or str(os.cpu_count() or 1)
        self.spawn(configure)
        # The static core too: the installed CMake package exports both.
        self.spawn(["cmake", "--build", str(build_dir), "-j", jobs,
                    "--target", "ctxvars", "ctxvars_shared", "ctxvars_python"])
        if stage.exists():
            shutil.rmtree(stage)
        self.spawn(["cmake", "--install", str(build_dir), "--prefix", str(stage)])

        modules = sorted((stage / MODULE_DIR).glob("ctxvars.*"))
        if len(modules) != 1:
            raise RuntimeError(f"setup.py: expected one ctxvars module in {stage / MODULE_DIR}, found {modules}")
        target = Path(self.get_ext_fullpath(ext.name))
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(modules[0], target)
        shutil.rmtree(stage / "lib" / PYVER)

        # pkg-config files name the prefix installed to (the staging directory): make
        # them relative to where they are installed.
        for pc in (stage / "lib" / "pkgconfig").glob("*.pc"):
            text = pc.read_text()
            pc.write_text(re.sub(r"(?m)^prefix=.*$", "prefix=${pcfiledir}/../..", text))
        # Nothing installed may point back into the build.
        for path in stage.rglob("*"):
            if path.is_file() and not path.is_symlink() and path.suffix in (".cmake", ".pc"):
                if str(stage) in path.read_text() or str(build_dir) in path.read_text():
                    raise RuntimeError(f"setup.py: {path} refers to the build directory")


class InstallStaged(install_data):
    """Installs the staged core, headers, CMake package and .pc files as data files."""

    def run(self):
        stage = self.get_finalized_command("build_ext").stage_dir()
        files = {}
        for path in sorted(stage.rglob("*")):
            if path.is_file() or path.is_symlink():
                files.setdefault(str(path.parent.relative_to(stage)), []).append(str(path))
        self.data_files = sorted(files.items())
        super().run()


class Install(install):
    # The staged files are only known after the build: always run install_data.
    sub_commands = [(name, (lambda self: True) if name == "install_data" else test)
                    for name, test in install.sub_commands]


BUILD_BASE.mkdir(parents=True, exist_ok=True)
setup(
    version=project_version(),
    packages=[],
    py_modules=[],
    ext_modules=[Extension("ctxvars", sources=[])],
    cmdclass={"build_ext": CMakeBuild, "install_data": InstallStaged, "install": Install},
    options={"build": {"build_base": str(BUILD_BASE)},
             "egg_info": {"egg_base": str(BUILD_BASE)}},
    zip_safe=False,
)
