"""Workers: consumer groups on the comment log (``livechat worker persist|notify``).

- ``persist``: copies the log into the HistoryStore (comments, deletes, purges) and advances
  history's per-stream watermarks; the only writer of comments into history in shared-log mode.
- ``notify``: turns @mentions of real users and replies into records on a ``notifications``
  topic and optional webhook POSTs.

Both commit their consumer offsets only after their work for a batch is done, so a worker killed
at any point restarts from its committed offsets and redoes at most one batch (each step is
idempotent, or at-least-once where stated).
"""
