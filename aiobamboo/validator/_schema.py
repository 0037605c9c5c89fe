"""Structure check of a whole tree (nested pipelines included) before any graph phase.

Raises `InvalidTreeError` for missing keys, wrong types and reused ids, then
`ConnectionValidateError` for flows and ``incoming``/``outgoing`` lists that do not
agree. Every access is guarded: arbitrary input gives one of these, never a crash.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from aiobamboo.exceptions import ConnectionValidateError, InvalidTreeError
from aiobamboo.timing import TimingError, parse_timing

from ._model import ACTIVITY_TYPES, GATEWAY_TYPES, START_TYPE, Kind, PipelineGraph
from ._problems import Problems
from ._vars import check_data, check_var_map, sound_var_map

if TYPE_CHECKING:
    from typing_extensions import TypeIs

__all__ = ["check_tree", "is_id"]

_PIPELINE_KEYS = ("start_event", "end_event", "activities", "gateways", "flows", "data")
_RESERVED_TYPES = {START_TYPE, *ACTIVITY_TYPES, *GATEWAY_TYPES}
_GROUPS = dict.fromkeys(GATEWAY_TYPES.values(), "gateway") | {
    Kind.START: "start event",
    Kind.END: "end event",
    Kind.ACTIVITY: "activity",
    Kind.SUBPROCESS: "activity",
}
_FLAG_KEYS = ("error_ignorable", "skippable", "retryable", "optional")
_START_KINDS = {START_TYPE: Kind.START}
_LOOP_FLAG_KEYS = ("enable", "fail_skip", "retryable", "skippable")


def check_tree(tree: object) -> list[PipelineGraph]:
    """Check ``tree`` and return the graph of every pipeline in it, innermost first."""
    return _TreeChecker().run(tree)


def is_id(value: object) -> TypeIs[str]:
    return isinstance(value, str) and value != ""


def _kind_name(value: object) -> str:
    return type(value).__name__


class _Node:
    # A plain slotted class: one is made per node of every tree validated.
    __slots__ = ("id", "incoming", "kind", "outgoing", "raw", "type")

    def __init__(
        self,
        id: str,
        kind: Kind,
        type: str,
        incoming: list[str],
        outgoing: list[str],
        raw: dict[str, Any],
    ) -> None:
        self.id = id
        self.kind = kind
        self.type = type
        self.incoming = incoming
        self.outgoing = outgoing
        self.raw = raw


#: Who used an id first: ``(what, label)`` reads "<what> <id> of <label>", or
#: "<what> <id>" without a label; put into words only when the id is used again.
_Owner = tuple[str, str | None]


class _TreeChecker:
    def __init__(self) -> None:
        self.problems = Problems()
        self.links = Problems()
        self.owners: dict[str, _Owner] = {}
        self.seen: set[int] = set()
        self.pending: list[tuple[object, str | None]] = []

    def run(self, tree: object) -> list[PipelineGraph]:
        graphs: list[PipelineGraph] = []
        self.pending.append((tree, None))
        while self.pending:
            graph = self._pipeline(*self.pending.pop())
            if graph is not None:
                graphs.append(graph)
        self.problems.raise_if_any(InvalidTreeError, "invalid pipeline tree")
        self.links.raise_if_any(
            ConnectionValidateError, "flows and the nodes' incoming/outgoing do not agree"
        )
        # Parents were checked before their subprocesses; validation runs inner first.
        return graphs[::-1]

    def _claim(self, ident: str, what: str, label: str | None) -> None:
        """Record a use of ``ident``; every use after the first is a problem."""
        owner = self.owners.get(ident)
        if owner is None:
            self.owners[ident] = (what, label)
        else:
            self.problems.add(
                f"id {ident} is used twice: by {_owner(ident, *owner)} and by "
                f"{_owner(ident, what, label)}",
                ident,
            )

    def _pipeline(self, tree: object, expected_id: str | None) -> PipelineGraph | None:
        before = len(self.problems.items)
        where = "pipeline tree" if expected_id is None else f"pipeline of SubProcess {expected_id}"
        if not isinstance(tree, dict):
            self.problems.add(f"{where} must be a dict, got {_kind_name(tree)}", *_ids(expected_id))
            return None
        if id(tree) in self.seen:
            self.problems.add(f"{where} is the same object as another pipeline of the tree")
            return None
        self.seen.add(id(tree))
        pid = self._pipeline_id(tree, expected_id, where)
        label = f"pipeline {pid}"
        for key in _PIPELINE_KEYS:
            if not isinstance(tree.get(key), dict):
                problem = (
                    "is missing"
                    if key not in tree
                    else f"must be a dict, not {_kind_name(tree[key])}"
                )
                self.problems.add(f"{label}: key {key!r} {problem}", pid)
        if len(self.problems.items) > before:
            return None
        nodes = self._nodes(tree, label)
        sources, targets = self._flows(tree["flows"], label)
        check_data(tree["data"], f"{label} data", self.problems, pid)
        if len(self.problems.items) > before:
            return None
        return self._graph(pid, tree, nodes, sources, targets, label)

    def _pipeline_id(self, tree: dict[str, Any], expected_id: str | None, where: str) -> str:
        pid = tree.get("id")
        if not is_id(pid):
            self.problems.add(
                f"{where}: 'id' must be a non-empty string, got {_kind_name(pid)}",
                *_ids(expected_id),
            )
            return expected_id or "?"
        if expected_id is None:
            self._claim(pid, "pipeline", None)
        elif pid != expected_id:
            self.problems.add(
                f"the pipeline of SubProcess {expected_id} has id {pid}; "
                "it must equal the SubProcess id",
                expected_id,
                pid,
            )
        return pid

    def _nodes(self, tree: dict[str, Any], label: str) -> list[_Node]:
        found: list[_Node | None] = [
            self._node(tree["start_event"], f"start event of {label}", None, _START_KINDS),
            self._node(tree["end_event"], f"end event of {label}", None, None),
        ]
        for group, kinds in (("activities", ACTIVITY_TYPES), ("gateways", GATEWAY_TYPES)):
            for key, raw in tree[group].items():
                if not (isinstance(key, str) and key != ""):
                    self.problems.add(f"{label}: {group} has a key that is not a non-empty string")
                    continue
                found.append(self._node(raw, f"{group} entry {key} of {label}", key, kinds))
        nodes = [node for node in found if node is not None]
        owners = self.owners
        for node in nodes:
            if node.id in owners:
                self._claim(node.id, _GROUPS[node.kind], label)
            else:
                owners[node.id] = (_GROUPS[node.kind], label)
        return nodes

    def _node(
        self, raw: object, where: str, key: str | None, kinds: Mapping[str, Kind] | None
    ) -> _Node | None:
        if not isinstance(raw, dict):
            self.problems.add(f"{where} must be a dict, got {_kind_name(raw)}", *_ids(key))
            return None
        nid = raw.get("id")
        if not (isinstance(nid, str) and nid != ""):
            self.problems.add(f"{where}: 'id' must be a non-empty string", *_ids(key))
            return None
        if key is not None and nid != key:
            self.problems.add(f"{where}: its id {nid} differs from its key {key}", key, nid)
        ntype = raw.get("type")
        if kinds is not None and type(ntype) is str and ntype in kinds:
            kind: Kind | None = kinds[ntype]
        else:
            kind = self._node_kind(ntype, where, nid, kinds)
        incoming = _flow_list(raw.get("incoming")) or self._flow_ids(raw, "incoming", where, nid)
        outgoing = _flow_list(raw.get("outgoing")) or self._flow_ids(raw, "outgoing", where, nid)
        name = raw.get("name")
        if name is not None and not isinstance(name, str):
            self.problems.add(f"{where}: 'name' must be a string or None", nid)
        if kind is None or incoming is None or outgoing is None:
            return None
        node = _Node(nid, kind, raw["type"], incoming, outgoing, raw)
        self._node_details(node, where)
        return node

    def _node_kind(
        self, ntype: object, where: str, nid: str, kinds: Mapping[str, Kind] | None
    ) -> Kind | None:
        if kinds is None:
            if is_id(ntype) and ntype not in _RESERVED_TYPES:
                return Kind.END
            self.problems.add(
                f"{where}: 'type' must be EmptyEndEvent or an end-event handler code, "
                f"got {ntype!r}"[:200],
                nid,
            )
            return None
        if isinstance(ntype, str) and ntype in kinds:
            return kinds[ntype]
        self.problems.add(
            f"{where}: 'type' must be one of {', '.join(kinds)}, got {ntype!r}"[:200], nid
        )
        return None

    def _flow_ids(self, raw: dict[str, Any], key: str, where: str, nid: str) -> list[str] | None:
        if key not in raw:
            self.problems.add(f"{where}: key {key!r} is missing", nid)
            return None
        value = raw[key]
        if value is None:
            # Trees exported by bk-sops and its relatives write None for a start
            # event's incoming and an end event's outgoing; the original reads it
            # as no flows, and so does the tree from here on.
            raw[key] = []
            return []
        if isinstance(value, str):
            return [value] if value else []
        if isinstance(value, list):
            for item in value:
                if not isinstance(item, str) or item == "":
                    break
            else:
                if len(set(value)) != len(value):
                    self.problems.add(f"{where}: {key!r} lists a flow twice", nid)
                    return None
                return list(value)
        self.problems.add(
            f"{where}: {key!r} must be a flow id or a list of flow ids, got {_kind_name(value)}",
            nid,
        )
        return None

    def _node_details(self, node: _Node, where: str) -> None:
        if node.kind is Kind.ACTIVITY:
            self._activity(node.raw, where, node.id)
        elif node.kind is Kind.SUBPROCESS:
            self._subprocess(node.raw, where, node.id)
        elif node.kind in (Kind.EXCLUSIVE, Kind.CONDITIONAL_PARALLEL):
            self._conditions(node, where)

    def _activity(self, raw: dict[str, Any], where: str, nid: str) -> None:
        component = raw.get("component")
        if not isinstance(component, dict):
            self.problems.add(f"{where}: 'component' must be a dict", nid)
        else:
            code = component.get("code", ...)
            if code is ... or not (code is None or isinstance(code, str)):
                self.problems.add(f"{where}: component 'code' must be a string", nid)
            if "version" in component and not isinstance(component["version"], str):
                self.problems.add(f"{where}: component 'version' must be a string", nid)
            inputs = component.get("inputs", ...)
            if not sound_var_map(inputs):
                check_var_map(inputs, f"{where} component inputs", self.problems, nid)
        for key in _FLAG_KEYS:
            flag = raw.get(key, False)
            if flag is not True and flag is not False:
                self.problems.add(f"{where}: {key!r} must be true or false", nid)
        if "timeout" in raw and raw["timeout"] is not None and not _optional_int(raw["timeout"]):
            self.problems.add(f"{where}: 'timeout' must be an integer or None", nid)
        if "loop_config" in raw:
            self._loop_config(raw["loop_config"], where, nid)
        if (
            type(raw) is not dict
            or raw.get("timeout_config") is not None
            or raw.get("timeout") is not None
            or raw.get("retry_policy") is not None
            or raw.get("events") is not None
        ):
            # parse_timing reads only these keys: when none is set there is no timing.
            try:
                parse_timing(raw)
            except TimingError as exc:
                self.problems.add(f"{where}: {exc}", nid)

    def _loop_config(self, config: object, where: str, nid: str) -> None:
        if config is None:
            return
        if not isinstance(config, dict):
            self.problems.add(f"{where}: 'loop_config' must be a dict or None", nid)
            return
        for key in _LOOP_FLAG_KEYS:
            if key in config and not isinstance(config[key], bool):
                self.problems.add(f"{where}: loop_config {key!r} must be true or false", nid)
        if "loop_times" in config and not _optional_int(config["loop_times"]):
            self.problems.add(f"{where}: loop_config 'loop_times' must be an integer", nid)
        if "outputs_key" in config and not isinstance(config["outputs_key"], str):
            self.problems.add(f"{where}: loop_config 'outputs_key' must be a string", nid)

    def _subprocess(self, raw: dict[str, Any], where: str, nid: str) -> None:
        params = raw.get("params", ...)
        if not sound_var_map(params):
            check_var_map(params, f"{where} params", self.problems, nid)
        if "pipeline" not in raw:
            self.problems.add(f"{where}: key 'pipeline' is missing", nid)
        else:
            self.pending.append((raw["pipeline"], nid))

    def _conditions(self, node: _Node, where: str) -> None:
        raw, nid = node.raw, node.id
        conditions = raw.get("conditions")
        if not isinstance(conditions, dict):
            self.problems.add(f"{where}: 'conditions' must be a dict of flow id to condition", nid)
        else:
            for flow, condition in conditions.items():
                if flow not in node.outgoing:
                    self.problems.add(
                        f"{where}: 'conditions' names {flow!r}, not one of its outgoing flows"[
                            :200
                        ],
                        nid,
                    )
                elif not (
                    isinstance(condition, dict) and isinstance(condition.get("evaluate"), str)
                ):
                    self.problems.add(
                        f"{where}: the condition of flow {flow} must be {{'evaluate': str}}", nid
                    )
        default = raw.get("default_condition", {})
        if not isinstance(default, dict):
            self.problems.add(f"{where}: 'default_condition' must be a dict", nid)
        elif "flow_id" in default and default["flow_id"] not in node.outgoing:
            self.problems.add(
                f"{where}: default_condition names {default['flow_id']!r}, "
                "not one of its outgoing flows"[:200],
                nid,
            )
        extra = raw.get("extra_info")
        if extra is not None and not isinstance(extra, dict):
            self.problems.add(f"{where}: 'extra_info' must be a dict or None", nid)

    def _flows(self, flows: dict[Any, Any], label: str) -> tuple[dict[str, str], dict[str, str]]:
        """The source and the target of each well-formed flow, in the tree's order."""
        sources: dict[str, str] = {}
        targets: dict[str, str] = {}
        owners, problems = self.owners, self.problems
        # is_id inline: this loop runs once a flow.
        for fid, flow in flows.items():
            if not (isinstance(fid, str) and fid != ""):
                problems.add(f"{label}: flows has a key that is not a non-empty string")
                continue
            if not isinstance(flow, dict):
                problems.add(f"flow {fid} of {label} must be a dict, got {_kind_name(flow)}", fid)
                continue
            if flow.get("id") != fid:
                problems.add(f"flow {fid} of {label}: its 'id' must equal its key", fid)
            source, target = flow.get("source"), flow.get("target")
            if not (isinstance(source, str) and isinstance(target, str) and source and target):
                problems.add(f"flow {fid} of {label}: 'source' and 'target' must be node ids", fid)
                continue
            if "is_default" in flow and not isinstance(flow["is_default"], bool):
                problems.add(f"flow {fid} of {label}: 'is_default' must be true or false", fid)
            if fid in owners:
                self._claim(fid, "flow", label)
            else:
                owners[fid] = ("flow", label)
            sources[fid] = source
            targets[fid] = target
        return sources, targets

    def _graph(
        self,
        pid: str,
        tree: dict[str, Any],
        nodes: list[_Node],
        sources: dict[str, str],
        targets: dict[str, str],
        label: str,
    ) -> PipelineGraph | None:
        kinds: dict[str, Kind] = {}
        types: dict[str, str] = {}
        raws: dict[str, dict[str, Any]] = {}
        outgoing: dict[str, list[str]] = {}
        incoming: dict[str, list[str]] = {}
        listed_out = listed_in = 0
        agree = True
        for node in nodes:
            nid = node.id
            kinds[nid] = node.kind
            types[nid] = node.type
            raws[nid] = node.raw
            outgoing[nid] = node.outgoing
            incoming[nid] = node.incoming
            listed_out += len(node.outgoing)
            listed_in += len(node.incoming)
            for fid in node.outgoing:
                if sources.get(fid) != nid:
                    agree = False
            for fid in node.incoming:
                if targets.get(fid) != nid:
                    agree = False
        # Node ids are unique here and no list names a flow twice, so each flow is
        # listed by at most one node, its source (target): when every flow starts
        # and ends at a node and every listing is right, equal counts mean no flow
        # is left unlisted either.
        if (
            not agree
            or listed_out != len(sources)
            or listed_in != len(targets)
            or not all(map(kinds.__contains__, sources.values()))
            or not all(map(kinds.__contains__, targets.values()))
        ):
            self._links(nodes, sources, targets, label)
            return None
        return PipelineGraph(
            id=pid,
            tree=tree,
            start=nodes[0].id,
            end=nodes[1].id,
            kinds=kinds,
            types=types,
            nodes=raws,
            source=sources,
            target=targets,
            outgoing=outgoing,
            incoming=incoming,
        )

    def _links(
        self,
        nodes: list[_Node],
        sources: dict[str, str],
        targets: dict[str, str],
        label: str,
    ) -> None:
        """Report every disagreement between the flows and the nodes' lists."""
        by_id = {node.id: node for node in nodes}
        for fid in sources:
            for end, node_id in (("starts at", sources[fid]), ("ends at", targets[fid])):
                if node_id not in by_id:
                    self.links.add(
                        f"flow {fid} of {label} {end} {node_id}, which is not a node of it",
                        fid,
                        node_id,
                    )
        starting: dict[str, set[str]] = {}
        ending: dict[str, set[str]] = {}
        for fid in sources:
            starting.setdefault(sources[fid], set()).add(fid)
            ending.setdefault(targets[fid], set()).add(fid)
        for node in nodes:
            self._node_links(node, sources, starting.get(node.id, set()), "outgoing", label)
            self._node_links(node, targets, ending.get(node.id, set()), "incoming", label)

    def _node_links(
        self, node: _Node, ends: dict[str, str], actual: set[str], key: str, label: str
    ) -> None:
        """``node``'s ``key`` list against the flows that really start (end) there.

        ``ends`` maps each flow to its source (for ``outgoing``) or target.
        """
        listed = node.outgoing if key == "outgoing" else node.incoming
        attr = "source" if key == "outgoing" else "target"
        for fid in listed:
            end = ends.get(fid)
            if end is None:
                self.links.add(
                    f"node {node.id} of {label} lists {key} flow {fid}, which does not exist",
                    node.id,
                    fid,
                )
            elif fid not in actual:
                self.links.add(
                    f"node {node.id} of {label} lists {key} flow {fid}, whose {attr} is {end}",
                    node.id,
                    fid,
                )
        for fid in sorted(actual.difference(listed)):
            self.links.add(
                f"flow {fid} of {label} has {attr} {node.id}, but that node's {key} does not "
                "list it",
                node.id,
                fid,
            )


def _flow_list(value: object) -> list[str] | None:
    """The flows of a well-formed, non-empty ``incoming`` or ``outgoing``, as
    :meth:`_TreeChecker._flow_ids` reads them; None for anything else, which it
    then reads (empty, missing, None) or refuses, naming the node."""
    if type(value) is str:
        return [value] if value else None
    if type(value) is not list:
        return None
    for item in value:
        if type(item) is not str or item == "":
            return None
    return list(value) if value and len(set(value)) == len(value) else None


def _owner(ident: str, what: str, label: str | None) -> str:
    return f"{what} {ident}" if label is None else f"{what} {ident} of {label}"


def _ids(value: str | None) -> tuple[str, ...]:
    return () if value is None else (value,)


def _optional_int(value: object) -> bool:
    return value is None or (isinstance(value, int) and not isinstance(value, bool))
