"""The double's public surface, generated from NVIDIA's per-version API tables in api/.

Objects the double creates answer only the names their class has in that version's table
(anything else raises AttributeError, as the real bindings would); enums get exactly the
members listed for that version, valued in declaration order.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, FrozenSet, Iterator

API_DIR = Path(__file__).with_name("api")
VERSIONS = ("8.5", "8.6", "10.3", "10.16", "11.1")


def load_table(version: str) -> Dict[str, Any]:
    table: Dict[str, Any] = json.loads((API_DIR / f"{version}.json").read_text(encoding="utf-8"))
    return table


class Guarded:
    """Base of every class the double instantiates; ``_names`` is set per version."""

    _trt_class = ""
    _version = ""
    _names: FrozenSet[str] = frozenset()

    def __getattribute__(self, name: str) -> Any:
        if not name.startswith("_"):
            cls = object.__getattribute__(self, "__class__")
            if name not in cls._names:
                raise AttributeError(
                    f"'tensorrt.{cls._trt_class}' object has no attribute '{name}' (TensorRT {cls._version} double)"
                )
        return object.__getattribute__(self, name)

    def __setattr__(self, name: str, value: Any) -> None:
        if not name.startswith("_") and name not in type(self)._names:
            raise AttributeError(f"'tensorrt.{self._trt_class}' object has no attribute '{name}'")
        object.__setattr__(self, name, value)


class EnumMember:
    def __init__(self, enum: str, name: str, value: int) -> None:
        self._enum, self.name, self.value = enum, name, value

    def __int__(self) -> int:
        return self.value

    def __index__(self) -> int:
        return self.value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, EnumMember) and (other._enum, other.value) == (self._enum, self.value)

    def __hash__(self) -> int:
        return hash((self._enum, self.value))

    def __repr__(self) -> str:
        return f"<{self._enum}.{self.name}: {self.value}>"

    __str__ = __repr__


class EnumType:
    def __init__(self, name: str, members: Any) -> None:
        self.__name__ = name.split(".")[-1]
        self.__members__ = {m: EnumMember(self.__name__, m, i) for i, m in enumerate(members)}
        for member in self.__members__.values():
            setattr(self, member.name, member)

    def __iter__(self) -> Iterator[EnumMember]:
        return iter(self.__members__.values())


def bind(cls: type, version: str, table: Dict[str, Any]) -> type:
    """A per-version subclass of ``cls`` exposing the names of ``cls._trt_class`` in ``table``."""
    names = frozenset(table["classes"][cls._trt_class])  # type: ignore[attr-defined]
    return type(cls.__name__, (cls,), {"_names": names, "_version": version})
