"""Register ``ds.actstats`` when xarray is imported, without importing xarray first.

xarray (with pandas) is most of the start-up time of the command line (about 0.4 s of
``actstats --help``), and the command line never uses the accessor. So ``import actstats``
registers the accessor at once only when xarray is already loaded; otherwise it leaves a
one-shot finder on ``sys.meta_path`` that lets xarray import as usual and then imports
:mod:`actstats.accessor` (the pattern of wrapt's post-import hooks). Any path that loads
xarray — ``import xarray`` before or after ``import actstats``, ``actstats.open_store`` —
ends with the accessor registered.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys


def _register() -> None:
    import actstats.accessor  # noqa: F401  (registers ds.actstats on import)


class _Loader(importlib.abc.Loader):
    """xarray's own loader, then the accessor's registration."""

    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        # xarray sees its own loader (importlib.resources reads its static files through it)
        module.__loader__ = self.loader
        module.__spec__.loader = self.loader
        self.loader.exec_module(module)
        _register()


class _AfterXarray(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name != "xarray":
            return None
        sys.meta_path.remove(self)  # one shot; also keeps find_spec below from finding itself
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None and hasattr(spec.loader, "exec_module"):
            spec.loader = _Loader(spec.loader)
        return spec


def register_accessor() -> None:
    """``ds.actstats`` now if xarray is loaded, else right after xarray's import."""
    if "xarray" in sys.modules:
        _register()
    elif not any(isinstance(finder, _AfterXarray) for finder in sys.meta_path):
        sys.meta_path.insert(0, _AfterXarray())
