"""``ocsctl cdr import FILE --format csv [--source NAME] [--rejects FILE]``: mediation of switch CDR files.

Each record is rated and charged like a finished session, once, however often the file is imported
(docs/wholesale.md, "Mediation"; the design and its crash argument: :mod:`ocs.mediation.importer`).
A file that cannot be imported at all (missing, wrong header) is refused before anything changes;
bad lines are not: they are rejected one by one, named in the summary and written with their reason
to the rejects file, and the rest is imported.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

from ocs.cli.context import Context, Refused, Usage, add_json, emit
from ocs.mediation.cdr_csv import HEADER_HINT, CdrReader, HeaderError
from ocs.mediation.importer import Busy, Importer
from ocs.mediation.summary import RejectsFile
from ocs.model import StoreUnavailable
from ocs.store.pipeline import AutoPipeline

SOURCE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
DEFAULT_SOURCE = "default"


def register(csub: Any) -> None:
    """The ``import`` verb under ``ocsctl cdr`` (registered by :mod:`ocs.cli.operations`)."""
    p = csub.add_parser("import", help="rate and charge a switch's CDR file, each record once (docs/wholesale.md)",
                        description=f"FILE has the header {HEADER_HINT}.")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--format", choices=("csv",), default="csv", help="the file's format (csv)")
    p.add_argument("--source", default=DEFAULT_SOURCE,
                   help="the switch that wrote the file: record ids are unique per source (default: default)")
    p.add_argument("--rejects", metavar="FILE", help="where rejected lines go (default: FILE.rejects.csv)")
    add_json(p)
    p.set_defaults(func=import_cmd)


def _open(path: Path) -> CdrReader:
    try:
        return CdrReader(path)
    except HeaderError as exc:
        raise Refused(f"{path}: {exc}") from None
    except OSError as exc:
        raise Refused(f"{path}: cannot read: {exc.strerror or exc}") from None


def _rejects_path(path: Path, given: str | None) -> Path:
    out = Path(given) if given else path.with_name(path.name + ".rejects.csv")
    if out.resolve() == path.resolve():
        raise Usage("--rejects must not be the file being imported")
    return out


async def import_cmd(ctx: Context, args: argparse.Namespace) -> dict[str, Any]:
    if not SOURCE_RE.match(args.source):
        raise Usage(f"--source: letters, digits, '.', '_', '-', at most 64: {args.source!r}")
    path = Path(args.file)
    reader = _open(path)
    try:
        rejects_path = _rejects_path(path, args.rejects)
        conn, redis = await ctx.pg(), await ctx.redis()
        rp = AutoPipeline(redis, raw=True)
        importer = Importer(conn, rp, ctx.keys, node=ctx.cfg.node.name, source=args.source)
        try:
            await importer.acquire()  # before the rejects file is made: a refusal changes nothing
            rejects = RejectsFile(rejects_path, reader.columns)
        except Busy as exc:
            raise Refused(str(exc)) from None
        except OSError as exc:
            await importer.release()
            raise Refused(f"{rejects_path}: cannot write: {exc.strerror or exc}") from None
        try:
            importer.on_reject = rejects.write
            summary = await importer.run(reader, str(path))
        except StoreUnavailable as exc:  # what was charged is in the run's marker sets: the next import records it
            raise Refused(f"redis: {exc}; import {importer.run_id} stopped, the next import of source"
                          f" {args.source!r} finishes it (records charged once)") from None
        finally:
            rejects.close()
            await rp.drain()
    finally:
        reader.close()
    summary.rejects_file = str(rejects_path)
    doc = summary.doc()
    emit(ctx, doc, summary.text())
    return doc
