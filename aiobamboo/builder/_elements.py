"""Builder elements and their fluent wiring (``extend``, ``connect``, ``to``, ``converge``)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from aiobamboo.exceptions import InvalidTreeError
from aiobamboo.timing import RetryPolicy, TimerEvent

from ._data import AttrDict, Data, Params, attr_dict, var_to_dict
from ._ids import unique_id

__all__ = [
    "Component",
    "ConditionalParallelGateway",
    "ConvergeGateway",
    "Element",
    "EmptyEndEvent",
    "EmptyStartEvent",
    "ExclusiveGateway",
    "ExecutableEndEvent",
    "ParallelGateway",
    "ServiceActivity",
    "SubProcess",
]


def _element_id(value: str | None) -> str:
    return value or unique_id("e")


def _element_list(value: Iterable[Element] | None) -> list[Element]:
    return list(value or [])


_ELEMENT_ARGS = ("id", "name", "outgoing")


def _element_args(owner: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    """``id``, ``name``, ``outgoing`` given after a subclass's own arguments, as the
    original passes them on: positionally in that order, or by name."""
    if len(args) > len(_ELEMENT_ARGS):
        raise TypeError(f"{owner}() got {len(args)} extra positional arguments, at most 3")
    named = dict(zip(_ELEMENT_ARGS, args, strict=False))
    for key, value in kwargs.items():
        if key not in _ELEMENT_ARGS:
            raise TypeError(f"{owner}() got an unexpected keyword argument {key!r}")
        if key in named:
            raise TypeError(f"{owner}() got multiple values for argument {key!r}")
        named[key] = value
    return named


# Constructors are written out (``init=False``) so that their positional
# arguments are the original's: a subclass's own first, then id, name, outgoing.
@attrs.define(eq=False, repr=False, init=False)
class Element:
    """A node of the pipeline graph under construction.

    Elements compare equal when their ids are equal, as in the original.
    """

    id: str = attrs.field(default=None, converter=_element_id, kw_only=True)
    name: str | None = attrs.field(default=None, kw_only=True)
    outgoing: list[Element] = attrs.field(factory=list, converter=_element_list, kw_only=True)

    def __init__(
        self,
        id: str | None = None,
        name: str | None = None,
        outgoing: Iterable[Element] | None = None,
    ) -> None:
        self.__attrs_init__(id=id, name=name, outgoing=outgoing)

    def type(self) -> str:
        """The node's ``type`` string in the tree."""
        raise NotImplementedError

    def extend(self, element: Element) -> Element:
        """Add the edge ``self -> element`` and return ``element``."""
        self.outgoing.append(element)
        return element

    def connect(self, *elements: Element) -> Element:
        """Add an edge from ``self`` to each of ``elements`` and return ``self``."""
        self.outgoing.extend(elements)
        return self

    def to(self, element: Element) -> Element:
        """Return ``element``: switch the subject of a chain."""
        return element

    def tail(self) -> Element:
        """Follow the first outgoing edge until an element without one."""
        seen = {id(self)}
        current: Element = self
        while current.outgoing:
            current = current.outgoing[0]
            if id(current) in seen:
                raise InvalidTreeError(
                    f"{self!r} has no tail: its chain of first outgoing edges loops back to "
                    f"{current!r}",
                    node_ids=[self.id, current.id],
                )
            seen.add(id(current))
        return current

    def converge(self, element: Element) -> Element:
        """Connect the tail of every outgoing branch to ``element`` and return it."""
        for branch in self.outgoing:
            branch.tail().connect(element)
        return element

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Element):
            return NotImplemented
        return self.id == other.id

    def __hash__(self) -> int:
        return hash(self.id)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}:{self.id}>"


@attrs.define(eq=False, repr=False, init=False)
class EmptyStartEvent(Element):
    """The entry of a (sub)pipeline."""

    def type(self) -> str:
        return "EmptyStartEvent"


@attrs.define(eq=False, repr=False, init=False)
class EmptyEndEvent(Element):
    """The exit of a (sub)pipeline."""

    def type(self) -> str:
        return "EmptyEndEvent"


@attrs.define(eq=False, repr=False, init=False)
class ExecutableEndEvent(Element):
    """An end event that runs the end-event handler registered under ``type`` first."""

    # Required by __init__; a default here keeps __attrs_init__ compatible with Element's.
    _type: str = attrs.field(default="", kw_only=True)

    def __init__(
        self,
        type: str,
        *,
        id: str | None = None,
        name: str | None = None,
        outgoing: Iterable[Element] | None = None,
    ) -> None:
        self.__attrs_init__(type=type, id=id, name=name, outgoing=outgoing)

    def type(self) -> str:
        return self._type


def _component(value: str | None) -> Component:
    return Component(code=value)


@attrs.define
class Component:
    """``component`` of a ServiceActivity: ``inputs`` accepts attribute assignment."""

    code: str | None = None
    inputs: AttrDict = attrs.field(factory=AttrDict)
    version: str | None = None

    def to_dict(self) -> dict[str, Any]:
        base: dict[str, Any] = {
            "code": self.code,
            "inputs": {key: var_to_dict(value) for key, value in self.inputs.items()},
        }
        if self.version is not None:
            base["version"] = self.version
        return base


@attrs.define(eq=False, repr=False, init=False)
class ServiceActivity(Element):
    """A node that runs the component ``component_code``.

    ``component_version`` (omitted from the tree when ``None``, so the runtime uses
    ``"legacy"``), ``optional`` and ``loop_config`` are keyword-only additions; the
    original builder always writes ``"optional": False`` and never ``loop_config``.

    Time (see ``docs/time.md``): ``timeout`` seconds are enforced, by
    ``timeout_action`` (``"forced_fail"``, the default, or
    ``"forced_fail_and_skip"``, written as the original's ``timeout_config``);
    ``retry_policy`` retries a failed attempt automatically; ``timer_events``
    are the node's boundary timer events.
    """

    component: Component = attrs.field(default=None, converter=_component, alias="component_code")
    error_ignorable: bool = False
    timeout: int | None = None
    skippable: bool = True
    retryable: bool = True
    optional: bool = attrs.field(default=False, kw_only=True)
    loop_config: dict[str, Any] | None = attrs.field(default=None, kw_only=True)
    timeout_action: str | None = attrs.field(default=None, kw_only=True)
    retry_policy: RetryPolicy | None = attrs.field(default=None, kw_only=True)
    timer_events: list[TimerEvent] = attrs.field(factory=list, kw_only=True)
    _component_version: str | None = attrs.field(
        default=None, kw_only=True, alias="component_version"
    )

    def __init__(
        self,
        component_code: str | None = None,
        error_ignorable: bool = False,
        timeout: int | None = None,
        skippable: bool = True,
        retryable: bool = True,
        *args: Any,
        optional: bool = False,
        loop_config: dict[str, Any] | None = None,
        component_version: str | None = None,
        timeout_action: str | None = None,
        retry_policy: RetryPolicy | None = None,
        timer_events: list[TimerEvent] | None = None,
        **kwargs: Any,
    ) -> None:
        self.__attrs_init__(
            component_code=component_code,
            error_ignorable=error_ignorable,
            timeout=timeout,
            skippable=skippable,
            retryable=retryable,
            optional=optional,
            loop_config=loop_config,
            component_version=component_version,
            timeout_action=timeout_action,
            retry_policy=retry_policy,
            timer_events=list(timer_events or []),
            **_element_args(type(self).__name__, args, kwargs),
        )

    def __attrs_post_init__(self) -> None:
        if self._component_version is not None:
            self.component.version = self._component_version

    def type(self) -> str:
        return "ServiceActivity"

    def component_dict(self) -> dict[str, Any]:
        """``{"code", "inputs"}`` plus ``"version"`` when one is set."""
        return self.component.to_dict()


def _params(value: Params | Mapping[str, Any] | None) -> Params | dict[str, Any]:
    if isinstance(value, Params):
        return value
    return dict(value or {})


@attrs.define(eq=False, repr=False, init=False)
class SubProcess(Element):
    """A node that runs the pipeline starting at ``start``; its tree id is this node's id."""

    start: Element | None = None
    data: Data | dict[str, Any] | None = None
    params: Params | dict[str, Any] = attrs.field(factory=dict, converter=_params)
    global_outputs: AttrDict = attrs.field(factory=AttrDict, converter=attr_dict)

    def __init__(
        self,
        start: Element | None = None,
        data: Data | dict[str, Any] | None = None,
        params: Params | Mapping[str, Any] | None = None,
        global_outputs: Mapping[str, Any] | None = None,
        *args: Any,
        **kwargs: Any,
    ) -> None:
        self.__attrs_init__(
            start=start,
            data=data,
            params=params,
            global_outputs=global_outputs,
            **_element_args(type(self).__name__, args, kwargs),
        )

    def type(self) -> str:
        return "SubProcess"


@attrs.define(eq=False, repr=False, init=False)
class ParallelGateway(Element):
    """Forks one branch per outgoing edge; they join at its converge gateway."""

    def type(self) -> str:
        return "ParallelGateway"


def _conditions(value: Mapping[int, str] | None) -> dict[int, str]:
    return dict(value or {})


@attrs.define(eq=False, repr=False, init=False)
class ConditionGateway(Element):
    """A gateway with a condition per outgoing edge, keyed by the edge's index."""

    conditions: dict[int, str] = attrs.field(factory=dict, converter=_conditions)
    default_condition_outgoing: int | None = None
    extra_info: dict[str, Any] | None = attrs.field(default=None, kw_only=True)

    def __init__(
        self,
        conditions: Mapping[int, str] | None = None,
        default_condition_outgoing: int | None = None,
        *args: Any,
        extra_info: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        self.__attrs_init__(
            conditions=conditions,
            default_condition_outgoing=default_condition_outgoing,
            extra_info=extra_info,
            **_element_args(type(self).__name__, args, kwargs),
        )

    def add_condition(self, index: int, evaluate: str) -> None:
        self.conditions[index] = evaluate

    def link_conditions_with(self, outgoing: list[str]) -> dict[str, dict[str, str]]:
        """``{flow_id: {"evaluate": expr}}`` for the flows created for the outgoing edges."""
        missing = [index for index in range(len(outgoing)) if index not in self.conditions]
        if missing:
            raise InvalidTreeError(
                f"{self.type()} {self.id}: no condition for outgoing edge index "
                f"{', '.join(map(str, missing))}; every outgoing edge needs one",
                node_ids=[self.id],
            )
        return {flow: {"evaluate": self.conditions[i]} for i, flow in enumerate(outgoing)}

    def link_default_condition_with(self, outgoing: list[str]) -> dict[str, str]:
        """``{}``, or ``{"flow_id": ...}`` for the default outgoing edge."""
        index = self.default_condition_outgoing
        if index is None:
            return {}
        if not 0 <= index < len(outgoing):
            raise InvalidTreeError(
                f"{self.type()} {self.id}: default_condition_outgoing={index} is not the "
                f"index of one of its {len(outgoing)} outgoing edges",
                node_ids=[self.id],
            )
        return {"flow_id": outgoing[index]}


@attrs.define(eq=False, repr=False, init=False)
class ExclusiveGateway(ConditionGateway):
    """Takes exactly one outgoing edge, chosen by the conditions."""

    def type(self) -> str:
        return "ExclusiveGateway"


@attrs.define(eq=False, repr=False, init=False)
class ConditionalParallelGateway(ConditionGateway):
    """Forks a branch for every outgoing edge whose condition is true."""

    def type(self) -> str:
        return "ConditionalParallelGateway"


@attrs.define(eq=False, repr=False, init=False)
class ConvergeGateway(Element):
    """Joins the branches of a gateway."""

    def type(self) -> str:
        return "ConvergeGateway"
