"""Ordering variables so that each comes after the variables it references."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from aiobamboo.exceptions import ReferenceCycleError

__all__ = ["dependency_order"]


def dependency_order(refs: Mapping[str, set[str]]) -> list[str]:
    """Order the keys of ``refs`` so every key follows the keys it references.

    ``refs`` maps a key to the keys its value references; references to keys
    outside the mapping are ignored (they resolve elsewhere or stay literal).
    The order is deterministic: keys in mapping order, each preceded by its
    not yet placed dependencies (visited in sorted order), so it is the order
    in which the original's on-demand recursion would resolve them.

    A key that references itself, directly or through others, raises
    :class:`ReferenceCycleError` whose ``keys`` are the keys on the cycle, in
    reference order. The walk is iterative: any depth of chain is fine.
    """
    if not any(refs.values()):
        # Nothing references anything (most nodes' variables): the mapping's order.
        return list(refs)
    done: set[str] = set()
    order: list[str] = []
    for root in refs:
        if root in done:
            continue
        path: list[str] = [root]
        on_path: set[str] = {root}
        stack: list[Iterator[str]] = [iter(sorted(refs[root]))]
        while stack:
            for dep in stack[-1]:
                if dep not in refs or dep in done:
                    continue
                if dep in on_path:
                    cycle = path[path.index(dep) :]
                    shown = " -> ".join([*cycle, dep])
                    raise ReferenceCycleError(
                        f"variables refer to each other in a cycle: {shown}", keys=cycle
                    )
                path.append(dep)
                on_path.add(dep)
                stack.append(iter(sorted(refs[dep])))
                break
            else:
                stack.pop()
                key = path.pop()
                on_path.discard(key)
                done.add(key)
                order.append(key)
    return order
