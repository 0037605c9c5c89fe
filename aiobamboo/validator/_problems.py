"""Collect every problem of a phase, then raise one exception naming all offending ids."""

from __future__ import annotations

import attrs

from aiobamboo.exceptions import InvalidTreeError

__all__ = ["Problems"]

# Past this many, the message says "and N more"; ``node_ids`` still lists every id.
_SHOWN = 20


@attrs.define
class Problems:
    """Messages, each with the ids it is about."""

    items: list[tuple[str, tuple[str, ...]]] = attrs.Factory(list)

    def add(self, message: str, *ids: str) -> None:
        self.items.append((message, ids))

    def __len__(self) -> int:
        return len(self.items)

    def node_ids(self) -> list[str]:
        return list(dict.fromkeys(i for _, ids in self.items for i in ids))

    def raise_if_any(self, error: type[InvalidTreeError], summary: str) -> None:
        """Raise ``error`` listing every problem so far, if there is any."""
        if not self.items:
            return
        shown = [message for message, _ in self.items[:_SHOWN]]
        more = len(self.items) - len(shown)
        text = f"{summary}: " + "; ".join(shown)
        if more:
            text += f"; and {more} more"
        raise error(text, node_ids=self.node_ids())
