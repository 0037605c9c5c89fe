"""The one exception hierarchy of aiobamboo.

::

    AiobambooError                      (alias: EngineException)
    ├── InvalidTreeError                (alias: TreeInvalidException)  .node_ids
    │   ├── ConnectionValidateError     a node's degree or target kind is wrong
    │   ├── CycleError                  a cycle without cycle_tolerate
    │   ├── ConvergeMatchError          gateways and converge gateways do not pair
    │   ├── StreamValidateError         an edge crosses between parallel branches
    │   └── IsolateNodeError            a node no path reaches
    ├── StartPositionInvalidError       (alias: StartPositionInvalidException)
    ├── TemplateError                   a ${...} or condition cannot be evaluated
    │   ├── UnsafeExpressionError       the sandbox refused it
    │   ├── ExpressionLimitError        it exceeds a size or time bound
    │   ├── ConditionSyntaxError        a gateway condition does not parse
    │   └── ReferenceCycleError         variables that refer to each other
    ├── ValueCodecError (TypeError)     a value the storage codec cannot encode
    ├── NotFoundError (LookupError)     unknown pipeline, node, schedule, ...
    ├── InvalidOperationError           the operation does not apply now
    │   ├── InvalidTransitionError      .from_state .to_state
    │   └── StateVersionMismatchError   (alias: StateVersionNotMatchError)
    ├── WaitTimeoutError (TimeoutError) a wait for a pipeline ran out of time
    ├── StaleWriteError                 a write lost a compare-and-set (lost lease)
    ├── ComponentError                  registration conflict, unknown code
    ├── ConfigurationError (ValueError) a runtime or setting argument is unusable
    └── StorageError                    a database driver error, in ``__cause__``

Every class has a default message (its docstring's first line); pass a more
specific one as the first argument.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = [
    "AiobambooError",
    "ComponentError",
    "ConditionSyntaxError",
    "ConfigurationError",
    "ConnectionValidateError",
    "ConvergeMatchError",
    "CycleError",
    "EngineException",
    "ExpressionLimitError",
    "InvalidOperationError",
    "InvalidTransitionError",
    "InvalidTreeError",
    "IsolateNodeError",
    "NotFoundError",
    "ReferenceCycleError",
    "StaleWriteError",
    "StartPositionInvalidError",
    "StartPositionInvalidException",
    "StateVersionMismatchError",
    "StateVersionNotMatchError",
    "StorageError",
    "StreamValidateError",
    "TemplateError",
    "TreeInvalidException",
    "UnsafeExpressionError",
    "ValueCodecError",
    "WaitTimeoutError",
]


class AiobambooError(Exception):
    """An aiobamboo error."""

    def __init__(self, message: str | None = None) -> None:
        if message is None:
            doc = type(self).__doc__ or type(self).__name__
            message = doc.strip().splitlines()[0]
        super().__init__(message)

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""


class InvalidTreeError(AiobambooError):
    """The pipeline tree is invalid."""

    def __init__(self, message: str | None = None, *, node_ids: Iterable[str] = ()) -> None:
        super().__init__(message)
        self.node_ids: tuple[str, ...] = tuple(node_ids)


class ConnectionValidateError(InvalidTreeError):
    """A node has the wrong number or kind of connections."""


class CycleError(InvalidTreeError):
    """The pipeline graph has a cycle and cycle_tolerate is not set."""


class ConvergeMatchError(InvalidTreeError):
    """A gateway and its converge gateway do not match."""


class StreamValidateError(InvalidTreeError):
    """A node is reachable from more than one parallel branch."""


class IsolateNodeError(InvalidTreeError):
    """A node is not reachable from the start event."""


class StartPositionInvalidError(AiobambooError):
    """This node_id is not allowed as a starting node."""


class TemplateError(AiobambooError):
    """A template or condition could not be evaluated."""


class UnsafeExpressionError(TemplateError):
    """The expression was refused by the sandbox."""


class ExpressionLimitError(TemplateError):
    """The expression exceeds a size or time limit."""


class ConditionSyntaxError(TemplateError):
    """The gateway condition does not parse."""


class ReferenceCycleError(TemplateError):
    """Variables refer to each other in a cycle."""

    def __init__(self, message: str | None = None, *, keys: Iterable[str] = ()) -> None:
        super().__init__(message)
        self.keys: tuple[str, ...] = tuple(keys)


class ValueCodecError(AiobambooError, TypeError):
    """The value cannot be stored: only JSON types, datetime, date, Decimal and tuple can."""


class NotFoundError(AiobambooError, LookupError):
    """The object does not exist."""


class InvalidOperationError(AiobambooError):
    """The operation is not allowed in the current state."""


class InvalidTransitionError(InvalidOperationError):
    """The state transition is not allowed."""

    def __init__(
        self, message: str | None = None, *, from_state: str | None = None, to_state: str = ""
    ) -> None:
        if message is None and to_state:
            message = f"can not transit state from {from_state} to {to_state}"
        super().__init__(message)
        self.from_state = from_state
        self.to_state = to_state


class StateVersionMismatchError(InvalidOperationError):
    """The node's state version does not match."""


class WaitTimeoutError(AiobambooError, TimeoutError):
    """The wait ran out of time before the pipeline came to rest."""


class StaleWriteError(AiobambooError):
    """A write lost its compare-and-set: another owner has taken the pipeline over."""


class ComponentError(AiobambooError):
    """A component, lazy variable or end-event handler cannot be registered or found."""


class ConfigurationError(AiobambooError, ValueError):
    """An argument of a runtime or a setting cannot be used."""


class StorageError(AiobambooError):
    """The storage backend failed."""


# Names of the original, kept so code ported from bamboo-engine reads the same.
EngineException = AiobambooError
TreeInvalidException = InvalidTreeError
StartPositionInvalidException = StartPositionInvalidError
StateVersionNotMatchError = StateVersionMismatchError
