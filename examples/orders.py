"""The pipeline the web examples run: reserve stock, wait for a person's approval, ship.

``approval`` waits for a callback: a person (or another system) approves with
``POST /bamboo/api/nodes/{approval_node_id}/callback`` and ``{"data": {"approved": true}}``.
"""

from __future__ import annotations

from typing import Any

from aiobamboo.builder import EmptyEndEvent, EmptyStartEvent, ServiceActivity, Var, build_tree
from aiobamboo.component import Component, Service


class Reserve(Service):
    async def execute(self, data: Any, parent_data: Any) -> bool:
        data.outputs.reserved = data.get_one_of_inputs("quantity")
        return True


class Approval(Service):
    __need_schedule__ = True

    async def execute(self, data: Any, parent_data: Any) -> bool:
        data.outputs.waiting_for = "a person to approve"
        return True

    async def schedule(self, data: Any, parent_data: Any, callback_data: Any = None) -> bool:
        data.outputs.approval = callback_data
        return isinstance(callback_data, dict) and callback_data.get("approved") is True


class Ship(Service):
    async def execute(self, data: Any, parent_data: Any) -> bool:
        data.outputs.shipped = True
        return True


class ReserveComponent(Component):
    code = "example_reserve"
    name = "Reserve stock"
    bound_service = Reserve


class ApprovalComponent(Component):
    code = "example_approval"
    name = "Approval"
    bound_service = Approval


class ShipComponent(Component):
    code = "example_ship"
    name = "Ship"
    bound_service = Ship


def build_order(item: str, quantity: int) -> tuple[dict[str, Any], str]:
    """The order's pipeline tree and the id of its approval node."""
    start = EmptyStartEvent(name="order placed")
    reserve = ServiceActivity(component_code="example_reserve", name="reserve")
    reserve.component.inputs.quantity = Var(type=Var.PLAIN, value=quantity)
    approval = ServiceActivity(component_code="example_approval", name="approval")
    ship = ServiceActivity(component_code="example_ship", name="ship")
    start.extend(reserve).extend(approval).extend(ship).extend(EmptyEndEvent(name="done"))
    tree = build_tree(start)
    tree["name"] = f"order of {quantity} {item}"
    return tree, approval.id
