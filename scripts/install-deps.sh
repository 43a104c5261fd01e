#!/usr/bin/env bash
# Installs (with apt-get, Debian packages only) whatever the build, tests,
# benchmarks, demo and Python module (and `pip install .`) need and the machine lacks.
set -euo pipefail
packages=(cmake ninja-build g++ clang libclang-rt-14-dev libgtest-dev libbenchmark-dev
          libasio-dev libboost1.81-dev libspdlog-dev libfmt-dev pybind11-dev python3-dev python3.11
          libpython3.11-testsuite libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev pkg-config
          python3-venv python3-pip python3-setuptools python3-wheel python3-aiohttp)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "install-deps: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
