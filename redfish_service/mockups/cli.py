"""``redfish-composer mockup check|export``."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from ..config import ConfigError, load_settings
from . import check, export, loader


def add_parser(sub) -> None:
    mockup = sub.add_parser("mockup", help="check a DSP2043 mockup, or export the tree as one")
    msub = mockup.add_subparsers(dest="mockup_command", required=True)
    chk = msub.add_parser(
        "check", help="list the problems of a mockup",
        description="List each problem of a mockup with its URI: files that are not JSON "
                    "objects, @odata.id that disagrees with the file's place, dangling links, "
                    "Members@odata.count that disagrees, misplaced action targets, and JSON "
                    "Schema violations (schemas from --schemas or REDFISH_JSON_SCHEMA_DIR). "
                    "Exit status 1 if there is any.")
    chk.add_argument("dir", type=Path, help="the mockup folder (short or long layout)")
    chk.add_argument("--schemas", type=Path,
                     help="the DSP8010 json-schema folder (default $REDFISH_JSON_SCHEMA_DIR; "
                          "Swordfish schemas are read from ../../swordfish/json-schema)")
    chk.add_argument("--no-schemas", action="store_true", help="skip the schema checks")
    exp = sub_export = msub.add_parser(
        "export", help="write the service's tree as a mockup (short layout)",
        description="Write the documents of a state directory (the service may be running) "
                    "as a DSP2043 mockup: canonical JSON, no @odata.etag, no secrets, no "
                    "sessions or tasks.")
    exp.add_argument("dir", type=Path, help="output folder (absent or empty)")
    sub_export.add_argument("--state-dir", type=Path,
                            help="the service's state directory (default as for serve)")


def run(args: argparse.Namespace) -> int:
    if args.mockup_command == "check":
        return _check(args)
    return _export(args)


def _check(args: argparse.Namespace) -> int:
    try:
        mockup = loader.load(args.dir)
        schemas = None if args.no_schemas else check.SchemaSet.from_env(args.schemas)
    except (loader.NotAMockup, RuntimeError) as e:
        print(f"redfish-composer: error: {e}", file=sys.stderr)
        return 2
    problems = check.check(mockup, schemas)
    for problem in problems:
        print(problem)
    note = "" if schemas else " (schemas not checked)"
    print(f"{args.dir}: {len(mockup.documents)} documents, {check.summary(problems)}{note}",
          file=sys.stderr)
    return 1 if problems else 0


def _export(args: argparse.Namespace) -> int:
    try:
        settings = load_settings(None, {"state_dir": args.state_dir})
        count = asyncio.run(export.export_state(settings.state_dir, args.dir))
    except (ConfigError, export.ExportError) as e:
        print(f"redfish-composer: error: {e}", file=sys.stderr)
        return 2
    print(f"redfish-composer: wrote {count} documents to {args.dir}", file=sys.stderr)
    return 0
