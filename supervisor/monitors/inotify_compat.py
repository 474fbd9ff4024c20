"""Import pyinotify on any Python: it imports `asyncore` at import time, and asyncore is gone
from Python 3.12. Only pyinotify's AsyncNotifier uses it; clawvisor uses AsyncioNotifier,
so a stand-in module with the one name pyinotify subclasses is enough.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any


def load_pyinotify() -> Any:
    """The pyinotify module, importable with or without asyncore."""
    try:
        importlib.import_module("asyncore")
    except ImportError:
        stub = types.ModuleType("asyncore")

        class file_dispatcher:
            """Stand-in base class; never instantiated by clawvisor."""

            def __init__(self, *args: object, **kwargs: object) -> None:
                raise RuntimeError("asyncore is not available on this Python")

        stub.file_dispatcher = file_dispatcher  # type: ignore[attr-defined]
        sys.modules["asyncore"] = stub
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return importlib.import_module("pyinotify")
