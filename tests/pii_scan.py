"""The personal-data scan (a standing check, ARCHITECTURE §3 "Personal data"): every response
the suite's API calls produce for an actor without `person:read_pii` — JSON, text, CSV and
.xlsx exports — is read for

(a) an ID number in clear: 18 characters, a plausible birth date in it, the check digit
    right (GB 11643);
(b) a mainland mobile in clear: `1[3-9]` and 9 more digits, standing alone;
(c) a masked ID number beside a birth date: a JSON object (or an export's row) with both an
    ID number mask and a non-empty birth-date field;
(d) a mask that leaves fewer than 10,000 candidates: an 18-character ID mask with more than
    its 6 region digits shown (with the sex and an age band beside it, the last four
    would leave ≤ 3,650 dates: server.pii.mask_id_number), or an 11-digit phone mask with
    more than 7 digits shown (8 shown leave 1,000).

Installed by tests/conftest.py on the test app only (`install`), never by the app itself.
The autouse fixture `personal_data_scan` fails a test during which a violation was seen,
naming the endpoint; `SCAN.seen` counts what was scanned (printed at the end of the run).

Not scanned, by design: the audited reveals (their point is the clear value, for a stated
purpose), one's own account (`/me` shows one's own phone), the API documentation (its
examples are nobody's), scripts and style sheets (code), and binary bodies (tiles, photos:
tiles carry no personal data, tests/grid/maps say so).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import re
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from flask import Flask, g, request

READ_PII = "person:read_pii"
# Audited reveals and one's own account: clear values by design. The API documentation's
# examples (DOMAIN.md's sample ID number) are nobody's.
EXEMPT_ENDPOINTS = frozenset({"cases.reveal_contact", "me.me"})
EXEMPT_BLUEPRINTS = frozenset({"api-docs"})
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"

_B = r"(?<![0-9A-Za-z*])"  # not inside a longer token
_E = r"(?![0-9A-Za-z*])"
ID_CLEAR = re.compile(_B + r"([1-9]\d{5}(?:18|19|20)\d{2}\d{4}\d{3}[\dXx])" + _E)
PHONE_CLEAR = re.compile(_B + r"(1[3-9]\d{9})" + _E)
ID_MASK = re.compile(_B + r"([0-9*]{17}[0-9Xx*])" + _E)
PHONE_MASK = re.compile(_B + r"(1[0-9*]{10})" + _E)
_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK = "10X98765432"
ID_MASK_MAX_SHOWN = 6
PHONE_MASK_MAX_SHOWN = 7
_BIRTH_KEY = re.compile(r"birth|born|dob|出生", re.I)


def is_id_number(text: str) -> bool:
    """An 18-character ID number: a real date in it and the right check character."""
    try:
        born = date(int(text[6:10]), int(text[10:12]), int(text[12:14]))
    except ValueError:
        return False
    if not 1890 <= born.year <= date.today().year:
        return False
    total = sum(int(c) * w for c, w in zip(text[:17], _WEIGHTS, strict=True))
    return _CHECK[total % 11] == text[17].upper()


def text_findings(text: str) -> list[str]:
    """(a), (b) and (d) in any text."""
    found = [f"ID number in clear: {m}" for m in ID_CLEAR.findall(text) if is_id_number(m)]
    found += [f"phone in clear: {m}" for m in PHONE_CLEAR.findall(text)]
    for m in ID_MASK.findall(text):
        if "*" in m and sum(c != "*" for c in m) > ID_MASK_MAX_SHOWN:
            found.append(f"ID mask shows more than the region: {m}")
    for m in PHONE_MASK.findall(text):
        if "*" in m and sum(c != "*" for c in m) > PHONE_MASK_MAX_SHOWN:
            found.append(f"phone mask shows more than 7 digits: {m}")
    return found


def _is_id_mask(value: Any) -> bool:
    return isinstance(value, str) and bool(ID_MASK.fullmatch(value)) and "*" in value


def json_findings(value: Any) -> list[str]:
    """(c) in a JSON document: an object with an ID mask and a birth date beside it."""
    found: list[str] = []
    if isinstance(value, dict):
        masks = [k for k, v in value.items() if _is_id_mask(v)]
        births = [k for k, v in value.items()
                  if _BIRTH_KEY.search(str(k)) and v not in (None, "")]
        if masks and births:
            found.append(f"masked ID number ({masks[0]}) beside a birth date ({births[0]})")
        for v in value.values():
            found += json_findings(v)
    elif isinstance(value, list):
        for v in value:
            found += json_findings(v)
    return found


def rows_findings(rows: list[list[Any]]) -> list[str]:
    """(a)–(d) in a table (an export): the header row names the columns."""
    if not rows:
        return []
    found = text_findings("\n".join("\t".join("" if c is None else str(c) for c in row)
                                    for row in rows))
    header = [str(c or "") for c in rows[0]]
    births = [i for i, h in enumerate(header) if _BIRTH_KEY.search(h)]
    for row in rows[1:]:
        if any(_is_id_mask(c) for c in row) and any(
                i < len(row) and row[i] not in (None, "") for i in births):
            found.append(f"masked ID number beside a birth date ({header[births[0]]})")
            break
    return found


def xlsx_rows(data: bytes) -> list[list[Any]]:
    from openpyxl import load_workbook

    book = load_workbook(io.BytesIO(data), read_only=True)
    rows = []
    for sheet in book.worksheets:
        rows += [list(r) for r in sheet.iter_rows(values_only=True)]
    book.close()
    return rows


def body_findings(mimetype: str, data: bytes) -> list[str] | None:
    """What a body breaks of the rule; None when the body is not of a kind scanned."""
    if mimetype == XLSX:
        return rows_findings(xlsx_rows(data))
    if mimetype == "text/csv":
        return rows_findings(list(csv.reader(io.StringIO(data.decode("utf-8-sig")))))
    if "javascript" in mimetype or mimetype == "text/css":
        return None  # code (vendored libraries: `1540483477*` is a product, not a phone)
    if mimetype.endswith(("json", "xml")) or mimetype.startswith("text/"):
        text = data.decode("utf-8", "replace")
        found = text_findings(text)
        if mimetype.endswith("json"):
            with contextlib.suppress(ValueError):  # not JSON after all: the text scan stands
                found += json_findings(json.loads(text))
        return found
    return None


@dataclass
class Scan:
    seen: int = 0
    exports: int = 0
    violations: list[str] = field(default_factory=list)

    def check(self, response: Any) -> Any:
        actor = g.get("actor")
        if actor is not None and actor.can(READ_PII):
            return response
        if request.endpoint in EXEMPT_ENDPOINTS or request.blueprint in EXEMPT_BLUEPRINTS:
            return response
        if response.direct_passthrough:  # a file: read it into memory, the client still gets it
            response.direct_passthrough = False
        try:
            data = response.get_data()
        except RuntimeError:  # a stream: not ours to consume
            return response
        if response.headers.get("Content-Encoding"):
            return response
        found = body_findings(response.mimetype or "", data)
        if found is None:
            return response
        self.seen += 1
        self.exports += response.mimetype in (XLSX, "text/csv")
        who = "anonymous" if actor is None else f"user {actor.user_id} {sorted(actor.roles)}"
        for finding in dict.fromkeys(found):
            self.violations.append(f"{request.method} {request.path} "
                                   f"({request.endpoint}, {who}): {finding}")
        return response


SCAN = Scan()


def install(app: Flask, scan: Scan = SCAN) -> Scan:
    """Scan every response of `app` (test apps only)."""
    app.after_request(scan.check)
    return scan
