"""Variables and data blocks: the values of ``data.inputs``, ``component.inputs`` and ``params``."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

import attrs

__all__ = [
    "AttrDict",
    "Data",
    "DataInput",
    "InitializedRewritableNodeOutput",
    "NodeOutput",
    "Params",
    "RewritableNodeOutput",
    "Var",
    "attr_dict",
    "var_to_dict",
]


class AttrDict(dict[str, Any]):
    """A dict whose keys can also be read and written as attributes.

    ``act.component.inputs.key = Var(...)`` is how the original sets component inputs.
    """

    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value

    def __delattr__(self, name: str) -> None:
        try:
            del self[name]
        except KeyError:
            raise AttributeError(name) from None


def attr_dict(value: Mapping[str, Any] | None) -> AttrDict:
    return AttrDict(value or {})


def _str_list(value: Iterable[str] | None) -> list[str]:
    return list(value or [])


@attrs.define
class Var:
    """A variable: ``{"type": ..., "value": ...}`` (plus ``custom_type`` when lazy)."""

    PLAIN: ClassVar[str] = "plain"
    SPLICE: ClassVar[str] = "splice"
    LAZY: ClassVar[str] = "lazy"

    type: str
    value: Any
    custom_type: str | None = None

    def to_dict(self) -> dict[str, Any]:
        base: dict[str, Any] = {"type": self.type, "value": self.value}
        if self.type == self.LAZY:
            base["custom_type"] = self.custom_type
        return base


@attrs.define
class DataInput(Var):
    """A pipeline input marked ``is_param``; the engine never reads the mark."""

    def to_dict(self) -> dict[str, Any]:
        base = super().to_dict()
        base["is_param"] = True
        return base


@attrs.define(init=False)
class NodeOutput(Var):
    """A context variable filled from output ``source_key`` of node ``source_act``."""

    source_act: str = attrs.field(kw_only=True)
    source_key: str = attrs.field(kw_only=True)

    def __init__(
        self,
        source_act: str,
        source_key: str,
        type: str = Var.PLAIN,
        custom_type: str | None = None,
        *,
        value: Any = None,
    ) -> None:
        # ``value`` is accepted and dropped, as the original does: the variable
        # holds nothing until its source node outputs it.
        del value
        self.__attrs_init__(type, None, custom_type, source_act=source_act, source_key=source_key)

    def to_dict(self) -> dict[str, Any]:
        base = super().to_dict()
        base["source_act"] = self.source_act
        base["source_key"] = self.source_key
        return base


@attrs.define(init=False)
class RewritableNodeOutput(Var):
    """A context variable that several nodes write: ``source_act`` is a list of
    ``{"source_act": node_id, "source_key": key}``."""

    source_act: list[dict[str, str]] = attrs.field(kw_only=True)

    def __init__(
        self,
        source_act: Iterable[Mapping[str, str]],
        type: str = Var.PLAIN,
        custom_type: str | None = None,
        *,
        value: Any = None,
    ) -> None:
        del value  # accepted and dropped, as in the original
        self.__attrs_init__(type, None, custom_type, source_act=[dict(item) for item in source_act])

    def to_dict(self) -> dict[str, Any]:
        base = super().to_dict()
        base["source_act"] = [dict(item) for item in self.source_act]
        return base


@attrs.define(init=False)
class InitializedRewritableNodeOutput(Var):
    """A rewritable output that also starts with a real ``value``."""

    source_act: list[dict[str, str]] = attrs.field(kw_only=True)

    def __init__(
        self,
        source_act: Iterable[Mapping[str, str]],
        type: str,
        value: Any,
        custom_type: str | None = None,
    ) -> None:
        self.__attrs_init__(
            type, value, custom_type, source_act=[dict(item) for item in source_act]
        )

    def to_dict(self) -> dict[str, Any]:
        base = super().to_dict()
        base["source_act"] = [dict(item) for item in self.source_act]
        base["need_initialization"] = True
        return base


def var_to_dict(value: Any) -> Any:
    """A `Var` as its tree dict; anything else (a ready-made dict) unchanged."""
    return value.to_dict() if isinstance(value, Var) else value


@attrs.define
class Data:
    """Pipeline data: ``{"inputs": {key: var}, "outputs": [key], "pre_render_keys": [key]}``."""

    inputs: AttrDict = attrs.field(factory=AttrDict, converter=attr_dict)
    outputs: list[str] = attrs.field(factory=list, converter=_str_list)
    pre_render_keys: list[str] = attrs.field(factory=list, converter=_str_list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "inputs": {key: var_to_dict(value) for key, value in self.inputs.items()},
            "outputs": list(self.outputs),
            "pre_render_keys": list(self.pre_render_keys),
        }


@attrs.define
class Params:
    """SubProcess parameters: ``{ctx_key: var}`` of the nested pipeline."""

    params: AttrDict = attrs.field(factory=AttrDict, converter=attr_dict)

    def to_dict(self) -> dict[str, Any]:
        return {key: var_to_dict(value) for key, value in self.params.items()}
