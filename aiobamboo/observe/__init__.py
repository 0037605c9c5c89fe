"""Seeing inside the engine: logging set-up, Prometheus metrics, OpenTelemetry traces.

- :mod:`aiobamboo.observe.logs`: :func:`~aiobamboo.observe.logs.configure_logging`,
  text or JSON lines (what ``aiobamboo worker --log-format`` uses);
- :mod:`aiobamboo.observe.metrics`: :class:`~aiobamboo.observe.metrics.PrometheusObserver`
  (the ``metrics`` extra);
- :mod:`aiobamboo.observe.tracing`: :class:`~aiobamboo.observe.tracing.TracingObserver`
  (the ``tracing`` extra).

An observer is passed as ``Settings(observer=...)``; :class:`Observers` combines
several. ``docs/observability.md`` lists the logger names, metric families and
span attributes.
"""

from __future__ import annotations

from ..engine._observer import CallOutcome, Observer, Observers, Phase

__all__ = ["CallOutcome", "Observer", "Observers", "Phase"]
