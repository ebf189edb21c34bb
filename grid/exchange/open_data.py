"""Open data (数据开放): public datasets of de-identified aggregates, as CSV and JSON, each with
a data dictionary, a licence and its update time, listed in a DCAT-style catalogue.

- cases per 大类 per street per month: reported, closed, on-time rate;
- service bookings per category per month;
- population per community per age band.

De-identification: only counts over groups, never a row about a person or a case; every
count under `MIN_CELL` (5) is suppressed (empty in CSV, null in JSON), and a rate is given
only when its denominator is at least `MIN_CELL`. Age bands are counted from the birth
year. The worker recomputes the datasets (`open_data_refresh`) into snapshots; the public
endpoints serve the snapshot with an ETag (its content hash) and Cache-Control: public, and
`modified` changes only when the rows do.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from grid.exchange.models import OpenDataSnapshot
from server import clock
from server.cli import PeriodicTask
from server.errors import NotFound

MIN_CELL = 5
LICENSE = {"name": "CC BY 4.0", "url": "https://creativecommons.org/licenses/by/4.0/"}
PUBLISHER = "网格化社会治理平台 (grid platform)"
MAX_AGE_S = 3600


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # string | integer | number
    title: str  # 中文
    description: str
    suppressed: bool = False  # a count under MIN_CELL is left empty


@dataclass(frozen=True)
class Dataset:
    name: str
    title: str
    description: str
    keywords: tuple[str, ...]
    columns: tuple[Column, ...]
    sql: str


_MONTH = Column("month", "string", "月份", "Calendar month (YYYY-MM, Asia/Shanghai)")

CASES = Dataset(
    "cases-by-street-category-month", "事件统计（街道·大类·月）",
    "Cases reported per street, per top-level category (大类) and per month of report; "
    "how many of them are closed (结案) and the share closed within their time limit.",
    ("事件", "城市管理", "cases"),
    (_MONTH, Column("street_code", "string", "街道代码", "Street (街道) area code"),
     Column("street_name", "string", "街道", "Street name"),
     Column("category_code", "string", "大类代码", "Top-level case category code"),
     Column("category_name", "string", "大类", "Top-level case category"),
     Column("reported", "integer", "上报数", "Cases reported in the month", True),
     Column("closed", "integer", "结案数", "Of those, closed now", True),
     Column("on_time_rate", "number", "按期结案率",
            "Closed within the time limit ÷ closed (0–1); empty when closed is")),
    """
    SELECT to_char(c.reported_at AT TIME ZONE :tz, 'YYYY-MM') AS month,
           st.code AS street_code, st.name AS street_name,
           coalesce(p.code, cat.code) AS category_code,
           coalesce(p.name, cat.name) AS category_name,
           count(*) AS reported,
           count(*) FILTER (WHERE c.closed_at IS NOT NULL) AS closed,
           count(*) FILTER (WHERE c.closed_in_time) AS on_time
    FROM cases c
    JOIN areas g ON g.id = c.area_id
    JOIN areas st ON st.level = 'street' AND g.path LIKE st.path || '%'
    JOIN case_categories cat ON cat.id = c.category_id
    LEFT JOIN case_categories p ON p.id = cat.parent_id
    WHERE c.state NOT IN ('merged', 'voided')
    GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 4
    """)

BOOKINGS = Dataset(
    "service-bookings-by-category-month", "便民服务预约统计（类别·月）",
    "Service bookings and requests per service category and month they were made; how "
    "many were served (attended or completed) and cancelled.",
    ("便民服务", "预约", "services"),
    (_MONTH, Column("category_code", "string", "服务类别代码", "Service category code"),
     Column("category_name", "string", "服务类别", "Service category"),
     Column("bookings", "integer", "预约数", "Bookings and requests made", True),
     Column("served", "integer", "已服务", "Of those, attended or completed", True),
     Column("cancelled", "integer", "已取消", "Of those, cancelled", True)),
    """
    SELECT to_char(b.created_at AT TIME ZONE :tz, 'YYYY-MM') AS month,
           sc.code AS category_code, sc.name AS category_name,
           count(*) AS bookings,
           count(*) FILTER (WHERE b.state IN ('attended', 'completed')) AS served,
           count(*) FILTER (WHERE b.state = 'cancelled') AS cancelled
    FROM service_bookings b
    JOIN services sv ON sv.id = b.service_id
    JOIN service_categories sc ON sc.id = sv.category_id
    GROUP BY 1, 2, 3 ORDER BY 1, 2
    """)

AGE_BANDS = ((0, 17, "0-17"), (18, 34, "18-34"), (35, 59, "35-59"), (60, 79, "60-79"),
             (80, 999, "80+"))
_BAND_SQL = "CASE " + " ".join(
    f"WHEN :year - extract(year FROM p.birth_date) BETWEEN {lo} AND {hi} THEN '{label}'"
    for lo, hi, label in AGE_BANDS) + " ELSE 'unknown' END"

POPULATION = Dataset(
    "population-by-community-age-band", "实有人口（社区·年龄段）",
    "Persons living in each community (社区) now, per age band (counted from the birth "
    "year: the age reached this year).",
    ("实有人口", "人口", "population"),
    (Column("community_code", "string", "社区代码", "Community (社区) area code"),
     Column("community_name", "string", "社区", "Community name"),
     Column("age_band", "string", "年龄段", "0-17, 18-34, 35-59, 60-79, 80+ or unknown"),
     Column("persons", "integer", "人数", "Persons present", True)),
    f"""
    SELECT cm.code AS community_code, cm.name AS community_name,
           {_BAND_SQL} AS age_band, count(*) AS persons
    FROM persons p
    JOIN areas g ON g.id = p.area_id
    JOIN areas cm ON cm.level = 'community'
                 AND g.path LIKE cm.path || '%'
    WHERE p.ended_at IS NULL AND p.status = 'present'
    GROUP BY 1, 2, 3 ORDER BY 1, 3
    """)

DATASETS: dict[str, Dataset] = {d.name: d for d in (CASES, BOOKINGS, POPULATION)}


def suppress(row: dict, dataset: Dataset) -> dict:
    """The published row: counts under MIN_CELL emptied; the on-time rate only over at
    least MIN_CELL closed cases."""
    out = {c.name: row.get(c.name) for c in dataset.columns}
    for column in dataset.columns:
        if column.suppressed and (out[column.name] or 0) < MIN_CELL:
            out[column.name] = None
    if "on_time_rate" in out:
        closed = row.get("closed") or 0
        out["on_time_rate"] = round(row["on_time"] / closed, 3) if closed >= MIN_CELL else None
    return out


def compute(s: Session, dataset: Dataset, tz: str, today: date) -> list[dict]:
    rows = s.execute(sa.text(dataset.sql), {"tz": tz, "year": today.year}).mappings()
    return [suppress(dict(r), dataset) for r in rows]


def refresh(s: Session, tz: str | None = None, today: date | None = None,
            names: tuple[str, ...] | None = None) -> dict:
    """Recompute datasets into their snapshots; `modified` moves only when rows change."""
    tz, today, at = tz or str(clock.local_zone()), today or clock.local_today(), clock.now()
    changed = {}
    for name in names or tuple(DATASETS):
        rows = compute(s, DATASETS[name], tz, today)
        tag = hashlib.sha256(json.dumps(rows, ensure_ascii=False, sort_keys=True)
                             .encode()).hexdigest()[:32]
        stmt = insert(OpenDataSnapshot).values(dataset=name, generated_at=at, rows=rows,
                                               etag=tag)
        s.execute(stmt.on_conflict_do_update(
            index_elements=["dataset"],
            set_={"generated_at": at, "rows": rows, "etag": tag},
            where=OpenDataSnapshot.etag != tag))
        changed[name] = len(rows)
    s.flush()
    return changed


def snapshot(s: Session, name: str) -> OpenDataSnapshot:
    """The published snapshot of a dataset (computed now if the worker has not yet)."""
    if name not in DATASETS:
        raise NotFound("No such dataset")
    found = s.get(OpenDataSnapshot, name)
    if found is None:
        refresh(s, names=(name,))
        found = s.get(OpenDataSnapshot, name)
    return found


# --- formats -------------------------------------------------------------------------------


def dictionary(dataset: Dataset) -> list[dict]:
    return [{"name": c.name, "type": c.type, "title": c.title, "description": c.description,
             **({"suppressed_below": MIN_CELL} if c.suppressed else {})}
            for c in dataset.columns]


def as_json(dataset: Dataset, snap: OpenDataSnapshot) -> dict:
    return {"dataset": dataset.name, "title": dataset.title,
            "description": dataset.description, "license": LICENSE,
            "modified": snap.generated_at.isoformat(), "suppression": _SUPPRESSION,
            "dictionary": dictionary(dataset), "rows": snap.rows}


def as_csv(dataset: Dataset, snap: OpenDataSnapshot) -> str:
    """UTF-8 CSV with a header row; suppressed cells empty; text cells that a spreadsheet
    would take for a formula are prefixed with an apostrophe."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([c.name for c in dataset.columns])
    for row in snap.rows:
        writer.writerow([_cell(row.get(c.name)) for c in dataset.columns])
    return out.getvalue()


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@"):
        return "'" + value
    return value


_SUPPRESSION = (f"Counts under {MIN_CELL} are suppressed (empty); rates need at least "
                f"{MIN_CELL} cases in the denominator.")


def catalog(s: Session, base_url: str) -> dict:
    """The DCAT-style catalogue (dcat:Catalog with dcat:Dataset and dcat:Distribution);
    `context` and `type` are JSON-LD's @context and @type (CatalogSchema names them)."""
    snaps = {x.dataset: x for x in s.scalars(sa.select(OpenDataSnapshot))}
    datasets = []
    for d in DATASETS.values():
        snap = snaps.get(d.name)
        modified: datetime | None = snap.generated_at if snap else None
        url = f"{base_url}/open-data/datasets/{d.name}"
        datasets.append({
            "@type": "dcat:Dataset", "identifier": d.name, "title": d.title,
            "description": d.description, "keyword": list(d.keywords),
            "license": LICENSE["url"], "publisher": {"name": PUBLISHER},
            "modified": modified.isoformat() if modified else None,
            "accrualPeriodicity": "R/PT1H",
            "conformsTo": _SUPPRESSION, "dictionary": dictionary(d),
            "distribution": [
                {"@type": "dcat:Distribution", "format": "CSV", "mediaType": "text/csv",
                 "downloadURL": f"{url}.csv"},
                {"@type": "dcat:Distribution", "format": "JSON",
                 "mediaType": "application/json", "downloadURL": f"{url}.json"}]})
    return {"context": "https://www.w3.org/ns/dcat.jsonld", "type": "dcat:Catalog",
            "title": "数据开放目录 (open data catalogue)", "publisher": {"name": PUBLISHER},
            "license": LICENSE["url"], "dataset": datasets}


def _refresh_task(s: Session) -> dict:
    return refresh(s)


PERIODIC_TASKS = (PeriodicTask("open_data_refresh", MAX_AGE_S, _refresh_task),)
