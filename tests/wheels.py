"""Tiny local wheels that stand in for PyPI packages, so dependency installs need no network."""

import zipfile
from pathlib import Path


def make_wheel(folder: Path, name: str = "tinydep", source: str = "VALUE = 42\n") -> Path:
    """Write `<name>-1.0-py3-none-any.whl` holding `<name>/__init__.py` = `source`; return its path."""
    wheel = folder / f"{name}-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr(f"{name}/__init__.py", source)
        zf.writestr(f"{name}-1.0.dist-info/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
        zf.writestr(f"{name}-1.0.dist-info/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        zf.writestr(f"{name}-1.0.dist-info/RECORD", "")
    return wheel
