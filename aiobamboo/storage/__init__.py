"""What every store shares, written once: the group committer and batch merging.

A store (``aiobamboo_sqlite``, ``aiobamboo_postgres``, or your own) keeps only
its SQL and driver glue: a ``write_group`` function that writes a group of
batches and says which were refused. The :class:`GroupCommitter` queues
commits, runs the groups and settles every caller; :func:`merge` turns a
group into one row per key, for one statement per table.
"""

from __future__ import annotations

from ._broadcast import Broadcast as Broadcast
from ._committer import CLOSE_TIMEOUT as CLOSE_TIMEOUT
from ._committer import BatchOutcome as BatchOutcome
from ._committer import GroupCommitter as GroupCommitter
from ._committer import WriteGroup as WriteGroup
from ._merge import Merged as Merged
from ._merge import merge as merge

__all__ = [
    "CLOSE_TIMEOUT",
    "BatchOutcome",
    "Broadcast",
    "GroupCommitter",
    "Merged",
    "WriteGroup",
    "merge",
]
