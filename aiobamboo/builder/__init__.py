"""Build pipeline trees from Python objects, in the original bamboo-engine's schema.

::

    start = EmptyStartEvent()
    act = ServiceActivity(component_code="echo")
    act.component.inputs.text = Var(type=Var.SPLICE, value="${name}")
    start.extend(act).extend(EmptyEndEvent())
    tree = build_tree(start, data=Data(inputs={"${name}": Var(type=Var.PLAIN, value="x")}))

The package is pure: it imports nothing from the engine or a runtime.
"""

from __future__ import annotations

from ._data import Data as Data
from ._data import DataInput as DataInput
from ._data import InitializedRewritableNodeOutput as InitializedRewritableNodeOutput
from ._data import NodeOutput as NodeOutput
from ._data import Params as Params
from ._data import RewritableNodeOutput as RewritableNodeOutput
from ._data import Var as Var
from ._elements import ConditionalParallelGateway as ConditionalParallelGateway
from ._elements import ConvergeGateway as ConvergeGateway
from ._elements import Element as Element
from ._elements import EmptyEndEvent as EmptyEndEvent
from ._elements import EmptyStartEvent as EmptyStartEvent
from ._elements import ExclusiveGateway as ExclusiveGateway
from ._elements import ExecutableEndEvent as ExecutableEndEvent
from ._elements import ParallelGateway as ParallelGateway
from ._elements import ServiceActivity as ServiceActivity
from ._elements import SubProcess as SubProcess
from ._ids import unique_id as unique_id
from ._token import generate_pipeline_token as generate_pipeline_token
from ._tree import build_tree as build_tree

__all__ = [
    "ConditionalParallelGateway",
    "ConvergeGateway",
    "Data",
    "DataInput",
    "Element",
    "EmptyEndEvent",
    "EmptyStartEvent",
    "ExclusiveGateway",
    "ExecutableEndEvent",
    "InitializedRewritableNodeOutput",
    "NodeOutput",
    "ParallelGateway",
    "Params",
    "RewritableNodeOutput",
    "ServiceActivity",
    "SubProcess",
    "Var",
    "build_tree",
    "generate_pipeline_token",
    "unique_id",
]
