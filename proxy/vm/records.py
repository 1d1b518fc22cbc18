"""`immutable`: a frozen dataclass to the type checker, a plain slotted one at run time.

A frozen dataclass sets each field in `__init__` through `object.__setattr__`: a page
(16 fields) took 2.6 us to make against 0.3 us, and every page read, made or copied
(`dataclasses.replace`) is made again, some thousands a memory-active turn and a few on
every short chat (issue 15). Nothing assigns to these records' fields, and mypy refuses
any code that would: `dataclass_transform(frozen_default=True)` has it check them as
frozen. They stay hashable as a frozen dataclass is (`unsafe_hash`: by their
fields, which fails on a field that is a dict, as before).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypeVar, dataclass_transform

T = TypeVar("T")


@dataclass_transform(frozen_default=True, field_specifiers=(field,))
def immutable(cls: type[T]) -> type[T]:
    return dataclass(slots=True, unsafe_hash=True)(cls)
