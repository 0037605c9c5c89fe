"""Checks of variables (``{"type", "value", ...}``) and of pipeline ``data``."""

from __future__ import annotations

from typing import Any

from ._problems import Problems

__all__ = ["check_data", "check_var", "check_var_map", "sound_var_map"]

_VAR_TYPES = ("plain", "splice", "lazy")
_VAR_FLAGS = ("need_render", "is_param", "need_initialization")


def check_var(var: object, where: str, problems: Problems, *ids: str) -> None:
    """A variable: type plain/splice/lazy, a value, and well-formed optional keys."""
    if not isinstance(var, dict):
        problems.add(f"{where} must be a dict, got {type(var).__name__}", *ids)
        return
    if var.get("type") not in _VAR_TYPES:
        problems.add(f"{where}: 'type' must be one of {', '.join(_VAR_TYPES)}", *ids)
    elif var["type"] == "lazy" and not isinstance(var.get("custom_type"), str):
        problems.add(f"{where}: a lazy variable needs a string 'custom_type'", *ids)
    if "value" not in var:
        problems.add(f"{where}: key 'value' is missing", *ids)
    for key in _VAR_FLAGS:
        if key in var and not isinstance(var[key], bool):
            problems.add(f"{where}: {key!r} must be true or false", *ids)
    if "source_act" in var:
        _check_source(var, where, problems, *ids)


def _check_source(var: dict[str, Any], where: str, problems: Problems, *ids: str) -> None:
    source = var["source_act"]
    if isinstance(source, str):
        if not isinstance(var.get("source_key"), str):
            problems.add(f"{where}: a node output needs a string 'source_key'", *ids)
        return
    if isinstance(source, list) and all(
        isinstance(item, dict)
        and isinstance(item.get("source_act"), str)
        and isinstance(item.get("source_key"), str)
        for item in source
    ):
        return
    problems.add(
        f"{where}: 'source_act' must be a node id or a list of "
        "{'source_act': str, 'source_key': str}",
        *ids,
    )


def check_var_map(value: object, where: str, problems: Problems, *ids: str) -> None:
    """A dict of string keys to variables (``...`` means the key is missing)."""
    if value is ...:
        problems.add(f"{where}: key is missing", *ids)
        return
    if not isinstance(value, dict):
        problems.add(f"{where} must be a dict, got {type(value).__name__}", *ids)
        return
    for key, var in value.items():
        if not isinstance(key, str):
            problems.add(f"{where}: keys must be strings", *ids)
            continue
        check_var(var, f"{where} {key!r}"[:200], problems, *ids)


def sound_var_map(value: object) -> bool:
    """Whether :func:`check_var_map` would find nothing wrong with ``value``,
    checked without naming anything: True only when it surely would not, else
    it looks and names what.

    Trees hold a variable per input of every activity, so this is the hot path;
    most variables hold just a type and a value.
    """
    if type(value) is not dict:
        return False
    for key, var in value.items():
        if type(key) is not str or type(var) is not dict:
            return False
        vtype = var.get("type")
        if type(vtype) is not str:
            return False
        if vtype == "lazy":
            if not isinstance(var.get("custom_type"), str):
                return False
        elif vtype != "plain" and vtype != "splice":
            return False
        if len(var) == 2:
            # "type" and one more key: sound if that one is the value.
            if "value" not in var:
                return False
            continue
        if "value" not in var or "source_act" in var:
            return False
        for flag in _VAR_FLAGS:
            if flag in var and not isinstance(var[flag], bool):
                return False
    return True


def check_data(data: dict[str, Any], where: str, problems: Problems, *ids: str) -> None:
    """``{"inputs": {key: var}, "outputs": [key], "pre_render_keys"?: [key]}``.

    ``outputs`` may also be a dict of keys, as some of the original's examples write it.
    """
    inputs = data.get("inputs", ...)
    if not sound_var_map(inputs):
        check_var_map(inputs, f"{where} inputs", problems, *ids)
    outputs = data.get("outputs", ...)
    if outputs is ...:
        problems.add(f"{where}: key 'outputs' is missing", *ids)
    elif not (isinstance(outputs, (list, dict)) and all(isinstance(k, str) for k in outputs)):
        problems.add(f"{where}: 'outputs' must be a list of context keys", *ids)
    pre_render = data.get("pre_render_keys", [])
    if not (isinstance(pre_render, list) and all(isinstance(k, str) for k in pre_render)):
        problems.add(f"{where}: 'pre_render_keys' must be a list of context keys", *ids)
