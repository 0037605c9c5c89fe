"""Registering components explicitly, and again after a reload."""

from __future__ import annotations

import importlib
import sys
import textwrap
from pathlib import Path

import pytest

from aiobamboo.component import Component, ComponentLibrary, Service
from aiobamboo.exceptions import ComponentError


class _Noop(Service):
    def execute(self, data: object, parent_data: object) -> bool:
        return True


def _component(code: str, qualname: str = "Made") -> type[Component]:
    cls = type(
        qualname, (Component,), {"code": code, "bound_service": _Noop, "auto_register": False}
    )
    cls.__qualname__ = qualname
    return cls


def test_explicit_registration_into_a_library_of_ones_own() -> None:
    library = ComponentLibrary()
    made = _component("explicit_code")
    assert library.register(made) is made
    assert library.get_component("explicit_code") is made
    assert library.get_service("explicit_code") is _Noop
    assert ComponentLibrary.default.get_component("explicit_code") is None


def test_registering_the_same_class_twice_is_a_no_op() -> None:
    library = ComponentLibrary()
    made = _component("twice")
    library.register(made)
    library.register(made)
    assert library.get_component("twice") is made


def test_a_different_class_under_a_taken_code_is_refused() -> None:
    library = ComponentLibrary()
    library.register(_component("taken", "First"))
    with pytest.raises(ComponentError, match="already registered"):
        library.register(_component("taken", "Second"))


def test_a_reloaded_module_registers_its_classes_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "reloaded_components.py").write_text(
        textwrap.dedent(
            """
            from aiobamboo.component import Component, Service

            class ReloadedService(Service):
                def execute(self, data, parent_data):
                    return True

            class ReloadedComponent(Component):
                code = "reloaded_component_code"
                bound_service = ReloadedService
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        module = importlib.import_module("reloaded_components")
        first = module.ReloadedComponent
        module = importlib.reload(module)  # defines the class again: no error
        assert module.ReloadedComponent is not first
        found = ComponentLibrary.default.get_component("reloaded_component_code")
        assert found is module.ReloadedComponent
    finally:
        sys.modules.pop("reloaded_components", None)
        found = ComponentLibrary.default.get_component("reloaded_component_code")
        if found is not None:
            ComponentLibrary.default.unregister(found)
