"""Start the service as ``python -m redfish_service`` does, for bench_get.py.

It wraps the application factory to report on stderr which HTTP request parser and
response-header serializer aiohttp will actually use in this process (the service may
override aiohttp's choice: ``redfish_service/protocol/wire.py`` installs the pure-Python
parser so that unknown methods reach the dispatcher). With ``--bench-force-c-parser``
it puts aiohttp's C parser (llhttp) back after the factory ran, to measure what that
override costs. Nothing else changes: same CLI, same arguments, same code.

    python benchmarks/service_launcher.py [--bench-force-c-parser] serve --state-dir ...
"""

from __future__ import annotations

import sys

from aiohttp import http_parser, http_writer, web_protocol

import redfish_service.app as app_module
import redfish_service.cli as cli_module

FORCE_C = "--bench-force-c-parser"


def _name(obj: object) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', obj)}"


def main() -> int:
    argv = sys.argv[1:]
    force_c = FORCE_C in argv
    argv = [a for a in argv if a != FORCE_C]
    factory = app_module.create_app

    def create_app(*args, **kwargs):
        app = factory(*args, **kwargs)
        if force_c:
            c_parser = getattr(http_parser, "HttpRequestParserC", None)
            if c_parser is None:
                print("bench-launcher: aiohttp's C parser is not available", file=sys.stderr)
                sys.exit(3)
            web_protocol.HttpRequestParser = c_parser  # type: ignore[misc]
        print(f"bench-launcher: parser={_name(web_protocol.HttpRequestParser)} "
              f"writer={_name(http_writer._serialize_headers)}", file=sys.stderr, flush=True)
        return app

    cli_module.create_app = create_app
    return cli_module.main(argv)


if __name__ == "__main__":
    sys.exit(main())
