"""A store's own files (its queries and migrations), read from its package.

A package installed as a folder is read with ``open``: ``importlib.resources``
imports ``pathlib``, ``tempfile``, ``zipfile`` and more, some 5,500 objects
that every full pass of the garbage collector would walk again for the life of
the process, and a megabyte of memory, for files read once at start-up. Only a
package that is not a folder (imported from a zip archive) is read through
``importlib.resources``.
"""

from __future__ import annotations

import importlib
import os
import sys

__all__ = ["package_sql_files", "read_package_text"]


def _folder(package: str) -> str | None:
    """The folder ``package`` was imported from, or None if it is not a folder."""
    module = sys.modules.get(package) or importlib.import_module(package)
    file = getattr(module, "__file__", None)
    if not file:
        return None
    folder = os.path.dirname(file)
    return folder if os.path.isdir(folder) else None


def _read(path: str) -> str:
    with open(path, encoding="utf-8") as fh:
        return fh.read()


def read_package_text(package: str, path: str) -> str:
    """The UTF-8 text of ``path`` (``/``-separated) inside ``package``."""
    folder = _folder(package)
    if folder is not None:
        return _read(os.path.join(folder, *path.split("/")))
    from importlib import resources

    return resources.files(package).joinpath(path).read_text(encoding="utf-8")


def package_sql_files(package: str, path: str) -> list[tuple[str, str]]:
    """``(name without .sql, text)`` of each ``.sql`` file in the folder ``path`` of
    ``package``, in the order of their names."""
    folder = _folder(package)
    if folder is not None:
        where = os.path.join(folder, *path.split("/"))
        names = sorted(name for name in os.listdir(where) if name.endswith(".sql"))
        return [(name.removesuffix(".sql"), _read(os.path.join(where, name))) for name in names]
    from importlib import resources

    found = resources.files(package).joinpath(path)
    names = sorted(f.name for f in found.iterdir() if f.name.endswith(".sql"))
    return [
        (name.removesuffix(".sql"), found.joinpath(name).read_text(encoding="utf-8"))
        for name in names
    ]
