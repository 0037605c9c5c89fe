"""Gateway matching: find the converge gateway of every gateway.

Gateways are resolved from the end of the (loop-free) graph backwards, so that the
gateways nested in a branch are known before the branch is walked. A branch walk
follows activities, steps over each nested gateway's block to that gateway's
converge gateway, and stops at the first converge gateway it meets directly
(``converge``), at the end event (``end``), on a flow closing a loop (``loop``), or at
a nested exclusive gateway whose branches never converge (``dead``).

Stepping over a nested gateway ``K`` with converge ``C``:

- ``C`` is *shared* when flows from outside ``K``'s block also enter it. The walk
  stops there, as a branch that reaches ``C`` directly would. The original decided
  this by counting branches against incoming flows; it miscounted nested sharing
  (https://github.com/TencentBlueKing/bamboo-engine/issues/162 and its
  relatives). Here the flows are compared as sets.
- otherwise ``C`` is *owned* by ``K`` and the walk goes on past it. ``C`` stays a
  candidate: when the branches do not otherwise meet one converge, the last
  candidate common to all of them is taken. A parallel gateway with one branch
  ending in an exclusive gateway's converge (the shape of that upstream issue) closes there.
- a parallel gateway never stops at the converge of another parallel gateway:
  nested parallel gateways need their own converge gateways.

A parallel gateway with a single branch that passes owned converges before its
last stop is ambiguous: the last stop may belong to an enclosing parallel gateway.
When an enclosing parallel gateway then fails because it may not stop there, the
single-branch one is made to close at its last owned converge instead, and the
matching runs again (at most once per such gateway). Such a gateway also closes
early when its branch passes an exclusive gateway that can end the pipeline, which
no parallel block may hold. A parallel branch that meets an exclusive gateway
without a converge of its own, whose branches all pass one owned converge and
then end, steps over it to that converge (the last one they all pass): it could
not end the pipeline from inside the parallel block anyway.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from aiobamboo.exceptions import ConvergeMatchError

from ._graph import Walk
from ._model import PARALLEL, SPLITTING, Kind, PipelineGraph
from ._problems import Problems

__all__ = ["Match", "Resolution", "match_gateways"]

_Stop = tuple[str, frozenset[str]]
_NOTHING: frozenset[str] = frozenset()


@attrs.frozen
class Resolution:
    """What a gateway's branches come to.

    ``inflows`` are the flows into ``converge`` that come from inside this gateway's
    block; ``owned`` says they are all of its (forward) incoming flows.
    ``reaches_end``: one of its own branches ends the pipeline; ``escapes``: that, or
    a gateway nested in its branches does.
    """

    converge: str | None
    inflows: frozenset[str] = frozenset()
    owned: bool = False
    reaches_end: bool = False
    escapes: bool = False
    #: An exclusive gateway without a converge whose branches all pass one owned
    #: converge before they end: the last such converge, which a parallel
    #: gateway's branch through it may close at.
    through: _Stop | None = None


@attrs.frozen
class Match:
    """The outcome of matching: a resolution per gateway and the parallel converges."""

    resolutions: dict[str, Resolution]
    parallel_owner: dict[str, str]

    def converge_of(self, gateway: str) -> str | None:
        return self.resolutions[gateway].converge


@attrs.define
class _Trail:
    """What a branch walk passes: owned converges it may close at, parallel converges
    it may not stop at, and whether it went past a gateway that can end the pipeline."""

    candidates: list[_Stop] = attrs.Factory(list)
    passed: list[tuple[str, str]] = attrs.Factory(list)
    sealed: bool = False
    #: Exclusive gateways stepped over to the converge their branches all pass.
    stepped: list[str] = attrs.Factory(list)


@attrs.frozen
class _Branch:
    flow: str
    outcome: str
    converge: str | None = None
    inflows: frozenset[str] = frozenset()
    candidates: tuple[_Stop, ...] = ()
    passed: tuple[tuple[str, str], ...] = ()
    detail: str = ""
    sealed: bool = False
    stepped: tuple[str, ...] = ()

    def stops(self) -> dict[str, frozenset[str]]:
        stops = dict(self.candidates)
        if self.converge is not None:
            stops[self.converge] = self.inflows
        return stops


def match_gateways(graph: PipelineGraph, walk: Walk) -> Match:
    """Resolve every gateway, or raise `ConvergeMatchError` naming each that fails."""
    if not graph.has_gateways:
        return Match({}, {})
    closing_early: set[str] = set()
    while True:
        matcher = _Matcher(graph, walk, frozenset(closing_early))
        matcher.run()
        retry = matcher.rebind - closing_early
        if not matcher.problems or not retry:
            matcher.problems.raise_if_any(
                ConvergeMatchError,
                f"pipeline {graph.id}: gateways and converge gateways do not match",
            )
            return Match(matcher.resolutions, matcher.parallel_owner)
        closing_early |= retry


class _Matcher:
    def __init__(self, graph: PipelineGraph, walk: Walk, closing_early: frozenset[str]) -> None:
        self.graph = graph
        self.walk = walk
        self.closing_early = closing_early
        # Single-branch parallel gateways that could close at an earlier converge.
        self.rebindable: set[str] = set()
        self.rebind: set[str] = set()
        self.resolutions: dict[str, Resolution] = {}
        self.failed: set[str] = set()
        self.parallel_owner: dict[str, str] = {}
        self.problems = Problems()

    def _forward_in(self, converge: str) -> frozenset[str]:
        """The flows into ``converge`` that close no loop."""
        back = self.walk.back
        return frozenset(f for f in self.graph.incoming[converge] if f not in back)

    def run(self) -> None:
        kinds = self.graph.kinds
        for node in reversed(self.walk.order):
            if kinds[node] in SPLITTING:
                self._resolve(node)

    def _resolve(self, gateway: str) -> None:
        branches = [self._walk(gateway, flow) for flow in self.graph.outgoing[gateway]]
        if any(branch.outcome == "failed" for branch in branches):
            # A nested gateway failed and was reported; do not pile errors on top.
            self.failed.add(gateway)
        elif self.graph.kinds[gateway] in PARALLEL:
            self._resolve_parallel(gateway, branches)
        else:
            self._resolve_exclusive(gateway, branches)

    def _walk(self, gateway: str, first: str) -> _Branch:
        trail = _Trail()
        parallel = self.graph.kinds[gateway] in PARALLEL
        outcome, converge, inflows, detail = self._follow(first, parallel, trail)
        return _Branch(
            first,
            outcome,
            converge,
            inflows,
            tuple(trail.candidates),
            tuple(trail.passed),
            detail,
            trail.sealed,
            tuple(trail.stepped),
        )

    def _follow(
        self, flow: str, parallel: bool, trail: _Trail
    ) -> tuple[str, str | None, frozenset[str], str]:
        """Walk from ``flow`` to the branch's outcome, noting the ``trail`` on the way."""
        graph, nothing = self.graph, _NOTHING
        back, target, kinds, outgoing = self.walk.back, graph.target, graph.kinds, graph.outgoing
        while True:
            if flow in back:
                return "loop", None, nothing, target[flow]
            node = target[flow]
            kind = kinds[node]
            if kind is Kind.ACTIVITY or kind is Kind.SUBPROCESS:
                # Nothing to note: a branch passes activities (checked first, the
                # most common node). No flow enters the start event.
                flow = outgoing[node][0]
                continue
            if kind is Kind.END:
                return "end", None, nothing, ""
            if kind is Kind.CONVERGE:
                return "converge", node, frozenset({flow}), ""
            if kind not in SPLITTING:
                flow = outgoing[node][0]
                continue
            if node in self.failed:
                return "failed", None, nothing, node
            resolution = self.resolutions[node]
            converge = resolution.converge
            if converge is None and parallel and resolution.through is not None:
                # A parallel block cannot end the pipeline, so its branch goes on
                # past the converge the exclusive gateway's branches all pass.
                trail.sealed = True
                trail.stepped.append(node)
                trail.candidates.append(resolution.through)
                flow = graph.outgoing[resolution.through[0]][0]
                continue
            if converge is None:
                return "dead", None, nothing, node
            trail.sealed = trail.sealed or resolution.escapes
            owner = self.parallel_owner.get(converge)
            if parallel and owner is not None:
                trail.passed.append((converge, owner))
            elif not resolution.owned:
                return "converge", converge, resolution.inflows, ""
            elif not trail.sealed:
                trail.candidates.append((converge, resolution.inflows))
            flow = graph.outgoing[converge][0]

    @staticmethod
    def _pick(branches: Sequence[_Branch]) -> _Stop | None:
        """Where the branches meet: their common last stop, else their last common stop."""
        finals = {branch.converge for branch in branches}
        if len(finals) == 1 and all(branch.outcome == "converge" for branch in branches):
            (converge,) = finals
            assert converge is not None
            return converge, frozenset().union(*(branch.inflows for branch in branches))
        stops = [branch.stops() for branch in branches]
        common = [c for c in stops[0] if all(c in other for other in stops[1:])]
        if not common:
            return None
        return common[-1], frozenset().union(*(other[common[-1]] for other in stops))

    def _pick_parallel(self, gateway: str, branches: list[_Branch]) -> _Stop | None:
        (only, *others) = branches
        if not others and only.candidates:
            if gateway in self.closing_early or only.sealed:
                return only.candidates[-1]
            self.rebindable.add(gateway)
        return self._pick(branches)

    def _resolve_parallel(self, gateway: str, branches: list[_Branch]) -> None:
        graph = self.graph
        picked = self._pick_parallel(gateway, branches)
        if picked is None:
            self.rebind.update(
                owner
                for branch in branches
                for _, owner in branch.passed
                if owner in self.rebindable
            )
            self._fail(
                gateway,
                f"{graph.describe(gateway)}: all its branches must meet at one converge "
                f"gateway, but {self._describe_branches(branches)}",
            )
            return
        converge, inflows = picked
        owner = self.parallel_owner.get(converge)
        if owner is not None:
            self._fail(
                gateway,
                f"{graph.describe(gateway)}: its converge gateway {converge} already closes "
                f"{graph.describe(owner)}; each parallel gateway needs its own converge gateway",
                converge,
            )
            return
        if len(graph.incoming[converge]) < len(branches):
            self._fail(
                gateway,
                f"{graph.describe(gateway)} has {len(branches)} branches but its converge "
                f"gateway {converge} only {len(graph.incoming[converge])} incoming flows",
                converge,
            )
            return
        self.parallel_owner[converge] = gateway
        for branch in branches:
            for stepped in branch.stepped:
                # Its branches end at this block's converge, not the pipeline.
                self.resolutions[stepped] = attrs.evolve(
                    self.resolutions[stepped], reaches_end=False
                )
        self.resolutions[gateway] = Resolution(
            converge,
            inflows,
            inflows == self._forward_in(converge),
            escapes=any(branch.sealed for branch in branches),
        )

    def _resolve_exclusive(self, gateway: str, branches: list[_Branch]) -> None:
        reaches_end = any(branch.outcome in ("end", "dead") for branch in branches)
        escapes = reaches_end or any(branch.sealed for branch in branches)
        converging = [branch for branch in branches if branch.outcome == "converge"]
        if not converging:
            through = None
            if all(branch.outcome == "end" and branch.candidates for branch in branches):
                through = self._pick(branches)
            self.resolutions[gateway] = Resolution(
                None, reaches_end=reaches_end, escapes=escapes, through=through
            )
            return
        picked = self._pick(converging)
        if picked is None:
            self._fail(
                gateway,
                f"{self.graph.describe(gateway)}: the first converge gateway its branches "
                f"reach must be the same, but {self._describe_branches(converging)}",
            )
            return
        converge, inflows = picked
        self.resolutions[gateway] = Resolution(
            converge, inflows, inflows == self._forward_in(converge), reaches_end, escapes
        )

    def _fail(self, gateway: str, message: str, *more: str) -> None:
        self.failed.add(gateway)
        self.problems.add(message, gateway, *more)

    def _describe_branches(self, branches: Sequence[_Branch]) -> str:
        return ", ".join(self._describe(branch) for branch in branches)

    def _describe(self, branch: _Branch) -> str:
        graph = self.graph
        text = f"the branch through flow {branch.flow} "
        if branch.outcome == "converge":
            text += f"meets converge gateway {branch.converge}"
        elif branch.outcome == "end":
            text += "reaches the end event"
        elif branch.outcome == "loop":
            text += f"loops back to {graph.describe(branch.detail)}"
        else:
            text += f"reaches {graph.describe(branch.detail)}, whose branches never converge"
        for converge, owner in branch.passed:
            text += f" (passing {converge}, which closes {graph.describe(owner)})"
        return text
