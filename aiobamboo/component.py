"""Components, lazy variables and end-event handlers: the user code a pipeline runs.

Defining a subclass of :class:`Component`, :class:`LazyVariable` or
:class:`EndEventHandler` registers it in :attr:`ComponentLibrary.default`
(unless the class sets ``auto_register = False``), as bamboo-pipeline does.
Service methods and hooks may be ``async def`` or plain ``def``; the engine runs
plain ones on its own thread pool, never on the event loop.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any, ClassVar

import attrs

from .exceptions import ComponentError

__all__ = [
    "AttrDict",
    "Component",
    "ComponentLibrary",
    "DataObject",
    "DefaultIntervalGenerator",
    "EndEventHandler",
    "InputItem",
    "IntervalGenerator",
    "LazyVariable",
    "OutputItem",
    "Service",
    "SquareIntervalGenerator",
    "StaticIntervalGenerator",
    "TimerEventAction",
]

DEFAULT_VERSION = "legacy"


class AttrDict(dict[str, Any]):
    """A dict whose keys can also be read and written as attributes."""

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


class DataObject:
    """The ``data`` / ``parent_data`` argument of service methods."""

    __slots__ = ("inputs", "outputs")

    def __init__(
        self, inputs: dict[str, Any] | None = None, outputs: dict[str, Any] | None = None
    ) -> None:
        self.inputs = AttrDict(inputs or {})
        self.outputs = AttrDict(outputs or {})

    def get_one_of_inputs(self, key: str, default: Any = None) -> Any:
        return self.inputs.get(key, default)

    def get_one_of_outputs(self, key: str, default: Any = None) -> Any:
        return self.outputs.get(key, default)

    def set_outputs(self, key: str, value: Any) -> bool:
        self.outputs[key] = value
        return True

    def update_outputs(self, outputs: dict[str, Any]) -> bool:
        self.outputs.update(outputs)
        return True

    def reset_outputs(self, outputs: dict[str, Any]) -> bool:
        self.outputs = AttrDict(outputs)
        return True

    def get_inputs(self) -> AttrDict:
        return self.inputs

    def get_outputs(self) -> AttrDict:
        return self.outputs

    def inputs_copy(self) -> dict[str, Any]:
        return dict(self.inputs)

    def outputs_copy(self) -> dict[str, Any]:
        return dict(self.outputs)

    def __repr__(self) -> str:
        return f"DataObject(inputs={dict(self.inputs)!r}, outputs={dict(self.outputs)!r})"


class IntervalGenerator:
    """Yields poll delays in seconds; the delay is a function of the poll count only."""

    def __init__(self) -> None:
        self.count = 0

    def next(self) -> float:
        self.count += 1
        return self.delay(self.count)

    def delay(self, count: int) -> float:
        raise NotImplementedError


class StaticIntervalGenerator(IntervalGenerator):
    """The same delay before every poll."""

    def __init__(self, interval: float) -> None:
        super().__init__()
        self.interval = interval

    def delay(self, count: int) -> float:
        return self.interval


class SquareIntervalGenerator(IntervalGenerator):
    """count² seconds: 1, 4, 9, ... after the 1st, 2nd, 3rd poll."""

    def delay(self, count: int) -> float:
        return float(count**2)


class DefaultIntervalGenerator(SquareIntervalGenerator):
    """The original's default: the same as :class:`SquareIntervalGenerator`."""


@attrs.frozen
class InputItem:
    name: str
    key: str
    type: str
    required: bool = True
    schema: Any = None


@attrs.frozen
class OutputItem:
    name: str
    key: str
    type: str
    schema: Any = None


class Service:
    """Base of the code behind a ServiceActivity.

    Subclasses implement ``execute(data, parent_data)`` and, when
    ``__need_schedule__`` is set, ``schedule(data, parent_data, callback_data=None)``.
    Return ``True`` (or nothing) for success, ``False`` for failure; other values
    count by their truth, as in the original. Any exception, BaseExceptions
    included, is a failure whose traceback lands in ``outputs["ex_data"]``. A
    fresh instance is made for every call, so state between calls lives in
    ``data.outputs``. ``async def`` methods run on the event loop and must not
    block it; plain ``def`` ones run on a thread.
    """

    __need_schedule__: ClassVar[bool] = False
    __multi_callback_enabled__: ClassVar[bool] = False
    __need_run_hook__: ClassVar[bool] = False
    interval: ClassVar[IntervalGenerator | None] = None

    # Set by the engine before each call.
    id: str = ""
    version: str = ""
    root_pipeline_id: str = ""
    top_pipeline_id: str = ""
    loop: int = 1
    inner_loop: int = 1
    logger: logging.Logger = logging.getLogger("aiobamboo.component")

    def __init__(self, name: str | None = None) -> None:
        self.name = name
        self.__schedule_finish__ = False

    def execute(self, data: DataObject, parent_data: DataObject) -> Any:
        raise NotImplementedError

    def schedule(self, data: DataObject, parent_data: DataObject, callback_data: Any = None) -> Any:
        raise NotImplementedError

    def rollback(self, data: DataObject, parent_data: DataObject, retry_data: Any = None) -> Any:
        """Undo what ``execute`` did, for a rollback in TOKEN mode; false if it could not.

        ``retry_data`` is what ``retry_rollback_failed_node`` was given. The
        default has nothing to undo.
        """
        return True

    def need_schedule(self) -> bool:
        return type(self).__need_schedule__

    def multi_callback_enabled(self) -> bool:
        return type(self).__multi_callback_enabled__

    def need_run_hook(self) -> bool:
        return type(self).__need_run_hook__

    def finish_schedule(self) -> None:
        self.__schedule_finish__ = True

    def is_schedule_done(self) -> bool:
        return self.__schedule_finish__

    def inputs_format(self) -> list[InputItem]:
        return []

    def outputs_format(self) -> list[OutputItem]:
        return []

    def outputs(self) -> list[OutputItem]:
        return [
            *self.outputs_format(),
            OutputItem(name="result", key="_result", type="bool"),
            OutputItem(name="loop", key="_loop", type="int"),
            OutputItem(name="inner loop", key="_inner_loop", type="int"),
        ]


class _Registered:
    """Registers concrete subclasses in the default library when they are defined."""

    code: ClassVar[str] = ""
    auto_register: ClassVar[bool] = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # ``auto_register`` is read from the class itself so that a base class
        # opting out does not silence its subclasses.
        if cls.__dict__.get("auto_register", True) and cls.__dict__.get("code"):
            ComponentLibrary.default.register(cls)


class Component(_Registered):
    """Binds a :class:`Service` to a ``(code, version)`` pair."""

    name: ClassVar[str] = ""
    version: ClassVar[str] = DEFAULT_VERSION
    bound_service: ClassVar[type[Service]]
    desc: ClassVar[str] = ""


class LazyVariable(_Registered):
    """A ``Var(type=Var.LAZY, custom_type=code)`` computed when a node needs it."""

    def __init__(
        self,
        value: Any = None,
        pipeline_data: dict[str, Any] | None = None,
        *,
        name: str = "",
        inner_loop: int = 1,
    ) -> None:
        self.name = name
        self.value = value
        self.pipeline_data = pipeline_data if pipeline_data is not None else {}
        self.inner_loop = inner_loop

    def get_value(self) -> Any:
        raise NotImplementedError


class EndEventHandler(_Registered):
    """Code run by an ``ExecutableEndEvent(type=code)`` before the pipeline ends."""

    def execute(self, in_subprocess: bool, root_pipeline_id: str, current_pipeline_id: str) -> Any:
        raise NotImplementedError


class TimerEventAction(_Registered):
    """What a node's timer event does when it fires, named by its ``code``.

    Registered like a component; a timer event names it in ``action``. The
    engine makes one per firing, with the node's ids, and calls :meth:`do`
    (a plain ``def`` on a worker thread, an ``async def`` on the loop) with the
    node's execution data and the root pipeline's data. What ``do`` returns is
    logged; what it raises is logged and changes nothing else.
    """

    def __init__(self, root_pipeline_id: str, node_id: str, version: str) -> None:
        self.root_pipeline_id = root_pipeline_id
        self.node_id = node_id
        self.version = version

    def do(self, data: DataObject, parent_data: DataObject) -> Any:
        raise NotImplementedError


class ComponentLibrary:
    """A registry of components, lazy variables and end-event handlers."""

    default: ClassVar[ComponentLibrary]

    def __init__(self) -> None:
        self._components: dict[tuple[str, str], type[Component]] = {}
        self._variables: dict[str, type[LazyVariable]] = {}
        self._end_events: dict[str, type[EndEventHandler]] = {}
        self._timer_actions: dict[str, type[TimerEventAction]] = {}

    def register(self, cls: type[Any]) -> type[Any]:
        """Add a class; the same class twice is a no-op, another under a taken code raises."""
        if isinstance(cls, type) and issubclass(cls, Component):
            self._put(self._components, (cls.code, cls.version or DEFAULT_VERSION), cls)
        elif isinstance(cls, type) and issubclass(cls, LazyVariable):
            self._put(self._variables, cls.code, cls)
        elif isinstance(cls, type) and issubclass(cls, EndEventHandler):
            self._put(self._end_events, cls.code, cls)
        elif isinstance(cls, type) and issubclass(cls, TimerEventAction):
            self._put(self._timer_actions, cls.code, cls)
        else:
            raise ComponentError(
                f"{cls!r} is not a Component, LazyVariable, EndEventHandler "
                "or TimerEventAction subclass"
            )
        return cls

    @staticmethod
    def _put(registry: dict[Any, Any], key: Any, cls: type[Any]) -> None:
        if not key or (isinstance(key, tuple) and not key[0]):
            raise ComponentError(f"{cls.__qualname__} has no code")
        taken = registry.get(key)
        if taken is not None and taken is not cls:
            # Re-defining a class of the same qualified name (a module reloaded,
            # a test redefining a fixture component) replaces the old one.
            if (taken.__module__, taken.__qualname__) != (cls.__module__, cls.__qualname__):
                raise ComponentError(
                    f"{key!r} is already registered to {taken.__module__}.{taken.__qualname__}"
                )
        registry[key] = cls

    def unregister(self, cls: type[Any]) -> None:
        registries: tuple[dict[Any, Any], ...] = (
            self._components,
            self._variables,
            self._end_events,
            self._timer_actions,
        )
        for registry in registries:
            for key in [k for k, v in registry.items() if v is cls]:
                del registry[key]

    def get_component(self, code: str, version: str | None = None) -> type[Component] | None:
        return self._components.get((code, version or DEFAULT_VERSION))

    def get_service(self, code: str, version: str | None = None) -> type[Service] | None:
        component = self.get_component(code, version)
        return component.bound_service if component is not None else None

    def get_lazy_variable(self, code: str) -> type[LazyVariable] | None:
        return self._variables.get(code)

    def get_end_event_handler(self, code: str) -> type[EndEventHandler] | None:
        return self._end_events.get(code)

    def get_timer_action(self, code: str) -> type[TimerEventAction] | None:
        return self._timer_actions.get(code)

    def components(self) -> Iterator[tuple[tuple[str, str], type[Component]]]:
        yield from self._components.items()


ComponentLibrary.default = ComponentLibrary()
