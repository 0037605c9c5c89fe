"""Unit tests: builder, validator, template and states, with no I/O."""

from __future__ import annotations
