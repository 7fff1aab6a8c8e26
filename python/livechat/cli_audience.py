"""``livechat follow`` and ``livechat mod queue``: the audience and moderation records of the meta
store (``backends.meta``, default the SQLite file under ``backends.data_dir``) from the command line.

``follow`` records that a user follows a channel (a broadcaster: the owner of their streams), as the
``follow`` op does, so followers-only mode can be satisfied by an operator or a sign-up flow;
``--since`` backdates it (an imported follow keeps its age). ``mod queue`` prints a stream's
moderation queue as the ``queue`` op returns it: pending flagged comments, then reports.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

from livechat.cli_options import EXIT_OK, EXIT_PROBLEMS, MIGRATE_FLAGS, add_config_options, add_flags, fail
from livechat.config import ConfigError, resolve
from livechat.ports.meta import MetaStore
from livechat.protocol import unpackb
from livechat.protocol.rules import QUEUE_LIMIT_DEFAULT, QUEUE_LIMIT_MAX


def add_parsers(sub: Any) -> None:
    """Add ``follow`` and ``mod`` to the ``livechat`` subcommands."""
    follow = sub.add_parser(
        "follow",
        help="record that a user follows a channel (followers-only mode), or --unfollow",
        description="Record in the meta store that USER follows CHANNEL (the broadcaster who owns the "
        "streams; an unregistered stream is its own channel). A repeat keeps the first follow time.",
    )
    follow.add_argument("channel", help="the channel: the streams' owner id")
    follow.add_argument("user", help="the follower's user id")
    follow.add_argument("--unfollow", action="store_true", help="remove the follow instead")
    follow.add_argument(
        "--since", type=float, default=None, metavar="UNIX_S", help="when the follow began (default: now)"
    )
    add_config_options(follow)
    add_flags(follow, MIGRATE_FLAGS)

    mod = sub.add_parser("mod", help="moderation records: `livechat mod queue STREAM`")
    mod_sub = mod.add_subparsers(dest="mod_command", required=True, metavar="COMMAND")
    queue = mod_sub.add_parser(
        "queue",
        help="print a stream's moderation queue: flagged comments, then reports",
        description="Print the pending flagged comments (oldest first) and the reports (newest first) "
        "of STREAM, as the `queue` op returns them.",
    )
    queue.add_argument("stream")
    queue.add_argument(
        "--limit", type=int, default=QUEUE_LIMIT_DEFAULT, help=f"items of each kind (1..{QUEUE_LIMIT_MAX})"
    )
    queue.add_argument("--before", type=int, default=None, metavar="REPORT_ID", help="older reports only")
    queue.add_argument("--json", action="store_true", help="one JSON object instead of lines")
    add_config_options(queue)
    add_flags(queue, MIGRATE_FLAGS)


def _meta_url(args: argparse.Namespace) -> str:
    from livechat.cli_options import flag_values

    config = resolve(args.config, None, flag_values(args, MIGRATE_FLAGS), args.set).config
    return config.backends.meta or config.backends.sqlite_url()


def run(args: argparse.Namespace) -> int:
    """Run ``follow`` or ``mod queue``; the exit status."""
    command = "follow" if args.command == "follow" else f"mod {args.mod_command}"
    try:
        url = _meta_url(args)
    except ConfigError as exc:
        return fail(command, exc)
    if args.command == "mod" and not 0 < args.limit <= QUEUE_LIMIT_MAX:
        print(f"livechat {command}: --limit must be 1..{QUEUE_LIMIT_MAX}", file=sys.stderr)
        return EXIT_PROBLEMS
    from livechat.backends import open_meta
    from livechat.ports.errors import BackendError, ConfigurationError

    async def main() -> None:
        meta = await open_meta(url)
        try:
            if args.command == "follow":
                await _follow(meta, args)
            else:
                await _queue(meta, args)
        finally:
            await meta.aclose()

    try:
        asyncio.run(main())
    except (BackendError, ConfigurationError) as exc:
        print(f"livechat {command}: {exc}", file=sys.stderr)
        return EXIT_PROBLEMS
    return EXIT_OK


async def _follow(meta: MetaStore, args: argparse.Namespace) -> None:
    if args.unfollow:
        existed = await meta.unfollow(args.channel, args.user)
        verb = "unfollowed" if existed else "did not follow"
        print(f"{args.user} {verb} {args.channel}")
        return
    await meta.follow(args.channel, args.user, args.since if args.since is not None else time.time())
    since = await meta.followed_since(args.channel, args.user)
    assert since is not None
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(since))
    print(f"{args.user} follows {args.channel} since {stamp}")


async def _queue(meta: MetaStore, args: argparse.Namespace) -> None:
    flagged = await meta.list_flagged(args.stream, args.limit)
    reports = await meta.list_reports(args.stream, args.limit + 1, args.before)
    more = len(reports) > args.limit
    reports = reports[: args.limit]
    flagged_rows = [
        {
            "id": f.comment_id,
            "user": f.user_id,
            "text": unpackb(f.payload).get("x", ""),
            "reason": f.reason,
            "score": f.score,
            "at": f.created_at,
        }
        for f in flagged
    ]
    report_rows = [
        {
            "id": r.report_id,
            "by": r.reporter_id,
            "user": r.target_user_id,
            "comment": r.target_comment_id,
            "reason": r.reason,
            "at": r.created_at,
        }
        for r in reports
    ]
    if args.json:
        page = {"stream": args.stream, "flagged": flagged_rows, "reports": report_rows, "more": more}
        print(json.dumps(page))
        return
    print(f"flagged comments in {args.stream} (pending, oldest first): {len(flagged_rows)}")
    for row in flagged_rows:
        print(f"  comment {row['id']} by {row['user']}: {row['text']!r} ({row['reason']})")
    print(f"reports in {args.stream} (newest first): {len(report_rows)}{' (more: --before)' if more else ''}")
    for row in report_rows:
        target = f"comment {row['comment']} by {row['user']}" if row["comment"] else f"user {row['user']}"
        print(f"  report {row['id']} by {row['by']}: {target}: {row['reason']!r}")
