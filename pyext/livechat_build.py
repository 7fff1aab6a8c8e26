"""livechat's PEP 517 build backend: maturin, plus the Cython fast path in the same wheel.

maturin builds the Rust core (``livechat._edge``) and packages ``python/livechat``; it does not
compile Cython. Without this backend ``pip install .`` gives a package whose ``livechat._speedups``
is missing, and livechat silently runs the plain-Python twins (``livechat._pure``) at the speeds
bench/test_speedups.py measures. Every hook is maturin's, except:

- ``build_wheel``: ``pyext/setup.py`` compiles ``livechat._speedups`` into a temporary directory
  and the module is added to maturin's wheel, its RECORD line written like the others.
- ``build_editable``: ``pyext/setup.py`` compiles it in place into ``python/livechat/``, where an
  editable install imports from (maturin puts ``livechat._edge`` there too).

A Cython module that fails to compile fails the build: a wheel without it is the silent slow
install this backend exists to prevent.
"""

from __future__ import annotations

import base64
import hashlib
import os
import stat
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import maturin
from maturin import (
    build_sdist,
    get_requires_for_build_editable,
    get_requires_for_build_sdist,
    get_requires_for_build_wheel,
    prepare_metadata_for_build_editable,
    prepare_metadata_for_build_wheel,
)

__all__ = [
    "build_editable",
    "build_sdist",
    "build_wheel",
    "get_requires_for_build_editable",
    "get_requires_for_build_sdist",
    "get_requires_for_build_wheel",
    "prepare_metadata_for_build_editable",
    "prepare_metadata_for_build_wheel",
]

SETUP = Path(__file__).resolve().parent / "setup.py"


def _compile_speedups(*build_ext_args: str) -> None:
    """``python pyext/setup.py [build_ext ARGS]`` with this interpreter; CalledProcessError on failure."""
    subprocess.run([sys.executable, str(SETUP), *build_ext_args], check=True)


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def _add_to_wheel(wheel: Path, files: Mapping[str, bytes]) -> None:
    """Rewrite ``wheel`` with ``files`` (archive name -> content) added and listed in its RECORD."""
    rewritten = wheel.with_suffix(".tmp")
    with zipfile.ZipFile(wheel) as old, zipfile.ZipFile(rewritten, "w", zipfile.ZIP_DEFLATED) as new:
        record = next(n for n in old.namelist() if n.endswith(".dist-info/RECORD"))
        for item in old.infolist():
            if item.filename != record:
                new.writestr(item, old.read(item.filename))
        for name, data in files.items():
            # As maturin writes its entries: a fixed date (reproducible wheels), rwxr-xr-x.
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = (stat.S_IFREG | 0o755) << 16
            new.writestr(info, data, zipfile.ZIP_DEFLATED)
        lines = old.read(record).decode().splitlines()
        lines += [_record_line(name, data) for name, data in files.items()]  # any order will do
        new.writestr(old.getinfo(record), "\n".join(lines) + "\n")
    os.replace(rewritten, wheel)


def build_wheel(
    wheel_directory: str,
    config_settings: Mapping[str, Any] | None = None,
    metadata_directory: str | None = None,
) -> str:
    name = maturin.build_wheel(wheel_directory, config_settings, metadata_directory)
    with tempfile.TemporaryDirectory(prefix="livechat-pyext-") as tmp:
        lib, temp = Path(tmp) / "lib", Path(tmp) / "temp"
        _compile_speedups("build_ext", "--build-lib", str(lib), "--build-temp", str(temp))
        built = {p.relative_to(lib).as_posix(): p.read_bytes() for p in lib.rglob("_speedups*.so")}
        if not built:
            raise RuntimeError(f"pyext/setup.py built no livechat/_speedups module under {lib}")
        _add_to_wheel(Path(wheel_directory) / name, built)
    return name


def build_editable(
    wheel_directory: str,
    config_settings: Mapping[str, Any] | None = None,
    metadata_directory: str | None = None,
) -> str:
    name = maturin.build_editable(wheel_directory, config_settings, metadata_directory)
    _compile_speedups()  # its default: in place, into python/livechat/
    return name
