"""Build ``livechat._speedups`` (Cython) into python/livechat/.

Usage, from anywhere: ``python pyext/setup.py`` (defaults to an in-tree build_ext). maturin builds
only the Rust module; this is the one step that compiles the Cython fast path. The package works
without it (pure twins in livechat._pure), at the speed measured in bench/test_speedups.py.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from Cython.Build import cythonize
from setuptools import Extension, setup

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

extension = Extension(
    "livechat._speedups",
    [str(HERE / "_speedups.pyx")],
    # Bit-identical float results with the pure twin: no fused multiply-add contraction.
    extra_compile_args=["-O2", "-ffp-contract=off"],
)

if __name__ == "__main__":
    args = sys.argv[1:] or [
        "build_ext",
        "--build-lib",
        str(ROOT / "python"),
        "--build-temp",
        str(ROOT / "build" / "pyext"),
    ]
    sys.path.insert(0, str(ROOT / "python"))
    # Run from pyext/: the repository's pyproject.toml describes the maturin build, not this one.
    os.chdir(HERE)
    setup(
        name="livechat-speedups",
        packages=[],
        py_modules=[],
        ext_modules=cythonize([extension], compiler_directives={"language_level": "3"}, quiet=True),
        script_args=args,
    )
