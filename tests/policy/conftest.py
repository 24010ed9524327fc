"""Make ``import policy`` mean the package, not this ``tests/policy`` directory.

``tests/`` is on ``sys.path`` while tests run (pytest's prepend import mode), and
the editable install's finder comes after the path finder, so ``tests/policy``
(a directory without ``__init__``) would shadow the real ``policy`` package as a
namespace package under ``.venv/bin/pytest``. Putting the project root first
restores the real one (``python -m pytest`` does this by itself).
"""

from __future__ import annotations

import sys
from pathlib import Path

_ROOT = str(Path(__file__).resolve().parents[2])
if sys.path[:1] != [_ROOT]:
    sys.path.insert(0, _ROOT)
_shadow = sys.modules.get("policy")
if _shadow is not None and getattr(_shadow, "__file__", None) is None:
    del sys.modules["policy"]  # a namespace package imported by mistake
