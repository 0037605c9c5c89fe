"""What every store shares, written once: the group committer and batch merging.

A store (``aiobamboo_sqlite``, ``aiobamboo_postgres``, or your own) keeps only
its SQL and driver glue: a ``write_group`` coroutine that writes a group of
batches and says which were refused (or a ``submit_group`` function that
starts the write on a thread of the store's and calls back when it ends).
The :class:`GroupCommitter` queues commits, runs the groups and settles every
caller; :func:`merge` turns a
group into one row per key, for one statement per table;
:func:`read_package_text` and :func:`package_sql_files` read a store's own
queries and migrations; :func:`ids_json` writes a row's list of ids.
"""

from __future__ import annotations

from ._broadcast import Broadcast as Broadcast
from ._committer import CLOSE_TIMEOUT as CLOSE_TIMEOUT
from ._committer import BatchOutcome as BatchOutcome
from ._committer import GroupCommitter as GroupCommitter
from ._committer import GroupDone as GroupDone
from ._committer import SubmitGroup as SubmitGroup
from ._committer import WriteGroup as WriteGroup
from ._files import package_sql_files as package_sql_files
from ._files import read_package_text as read_package_text
from ._merge import Merged as Merged
from ._merge import merge as merge
from ._text import ids_json as ids_json

__all__ = [
    "CLOSE_TIMEOUT",
    "BatchOutcome",
    "Broadcast",
    "GroupCommitter",
    "GroupDone",
    "Merged",
    "SubmitGroup",
    "WriteGroup",
    "ids_json",
    "merge",
    "package_sql_files",
    "read_package_text",
]
