"""The HTTP/1.1 parser the service runs on.

aiohttp's C parser (llhttp) rejects any request method outside its own table with a
plain-text 400 before the application sees the request. DSP0266 requires an unknown
method to be answered 405 or 501 (the Protocol Validator sends ``FAKEMETHODFORTEST``).
aiohttp's pure-Python parser accepts any RFC 9110 token as a method and lets the
dispatcher answer 405 with ``Allow``. Measured cost on the read path: about 15 % of peak
GET throughput (see ``benchmarks/``); ``docs/decisions.md`` records the trade-off.
"""

from __future__ import annotations

from aiohttp import http_parser, web_protocol


def accept_any_method() -> None:
    """Make aiohttp's request handlers parse with the token-accepting parser."""
    web_protocol.HttpRequestParser = http_parser.HttpRequestParserPy  # type: ignore[misc]
