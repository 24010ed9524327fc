"""Per-object memoisation that cannot go stale.

Derived views (the folded consent records, digests, rule lookups) are cached on
the immutable model object they were computed from, **keyed by the identity of
the fields they depend on**. ``functools.cached_property`` is not safe here:
pydantic's ``model_copy(update=...)`` copies the instance ``__dict__``, cache
included, so a copy with an appended withdrawal would inherit a fold that still
honours the withdrawn consent. With an identity key, any replaced field (a new
events tuple) misses the cache and the view is rebuilt. Fields are immutable
(frozen models, tuples, frozensets), so the same objects mean the same values.
"""

from __future__ import annotations

from collections.abc import Callable
from operator import is_
from typing import TypeVar, cast

_T = TypeVar("_T")
_PREFIX = "_sigbus_memo_"


def memo(obj: object, name: str, key: tuple[object, ...], build: Callable[[], _T]) -> _T:
    """``build()`` once per ``(obj, name)`` as long as the ``key`` objects are the same."""
    slot = _PREFIX + name
    store = obj.__dict__
    hit = store.get(slot)
    if hit is not None:
        old_key, value = hit
        if len(old_key) == len(key) and all(map(is_, old_key, key)):
            return cast(_T, value)
    value = build()
    store[slot] = (key, value)
    return value
