"""Leaders' reports (领导报表): what a street or district leader takes to the weekly meeting,
as a formatted .xlsx of an area and period — summary, by department, by grid, by category,
the overdue and escalated lists, the warnings raised and resolved.

Every figure comes from the function the API answers with for the same query: the
evaluation (综合评价) from grid.cases.stats.performance (`/stats/performance`), the warnings
from grid.insights.warnings (`/warnings`, `/warnings/counts`); the categories and lists
from the case scope (grid.cases.scope.visible). So a report equals the API for the actor
it was built for (a test compares them).

On demand: `POST /reports/leaders` queues a job (server/jobs.py) that builds it as the
account that asked; the file is kept in the blob store (server/storage) and downloaded by
that account. Weekly: the worker builds last week's (Monday to Monday, local time) for
each street and district that has none yet, as the platform (its whole area, figures about
fewer than 5 people suppressed), and puts a notice with the download link in the inbox of
the area's leaders (REPORT_RECIPIENTS); any account with stats:read whose scope holds the
area may download it. Every download is audited.
"""

from __future__ import annotations

import hashlib
import io
import time
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from openpyxl import Workbook
from openpyxl.styles import Alignment, Font, PatternFill
from sqlalchemy.orm import Session

from grid.areas import service as areas
from grid.areas.models import Area, Membership
from grid.cases import stats
from grid.cases.models import OPEN_STATES, Case, CaseCategory
from grid.cases.scope import visible
from grid.insights import warnings as warnings_service
from grid.insights.models import LEVEL_LABELS, WARNING_STATES, EarlyWarning, LeaderReport
from notifications.service import NoticeTemplate, notify
from server import audit, clock, jobs
from server.auth.actor import Actor
from server.auth.permissions import ADMIN, REPORT_RECIPIENTS
from server.errors import NotFound
from server.storage.blobs import blob_key
from server.xlsx import append_row, safe_cell

JOB_KIND = "leader_report"
REPORT_LEVELS = ("street", "district")
LIST_LIMIT = 1000  # rows of the overdue / escalated lists (the sheet says when cut)
NOTICE_TEMPLATES: tuple[NoticeTemplate, ...] = (
    NoticeTemplate("leader_report", ("{area}周报已生成", "{start} 至 {end}，点击下载"),
                   ("Weekly report of {area}", "{start} to {end}: tap to download")),
)
# The columns of the evaluation shown, with their 中文 headers.
MEASURES = (("reported", "上报数"), ("accepted", "立案数"), ("dispatched", "派遣数"),
            ("handled", "处置数"), ("on_time_handling_rate", "按期处置率%"),
            ("closed", "结案数"), ("closure_rate", "结案率%"),
            ("on_time_closure_rate", "按期结案率%"), ("rework_rate", "返工率%"),
            ("satisfaction_rate", "满意率%"), ("score", "综合评价分"), ("grade", "等级"))


def report_actor() -> Actor:
    """The platform building a weekly report: every area (the report names one), reading
    cases, statistics and warnings, without register access (small figures suppressed)."""
    return Actor(user_id=0, roles=frozenset({ADMIN}),
                 permissions=frozenset({"stats:read", "case:read", "warning:read"}))


# --- the figures ---------------------------------------------------------------------------


def figures(s: Session, actor: Actor, area: Area, start: datetime, end: datetime,
            weights: dict) -> dict:
    """Everything the report shows, from the functions the API answers with."""
    performance = stats.performance(s, actor, {"start": start, "end": end,
                                               "area_id": area.id}, weights)
    raised = {"area_id": area.id, "raised_from": start, "raised_to": end}
    resolved = {"area_id": area.id, "closed_from": start, "closed_to": end,
                "state": "resolved"}
    return {
        "area": {"id": area.id, "code": area.code, "name": area.name},
        "start": start, "end": end, "performance": performance,
        "categories": by_category(s, actor, area, start, end),
        "overdue": case_list(s, actor, area, Case.overdue),
        "escalated": case_list(s, actor, area, Case.escalation > 0),
        "warnings_raised": _warnings(s, actor, raised),
        "warnings_resolved": _warnings(s, actor, resolved),
        "warning_counts": warnings_service.warning_counts(s, actor, raised),
    }


def _warnings(s: Session, actor: Actor, filters: dict) -> list[dict]:
    stmt = (warnings_service._filtered(actor, filters)
            .options(sa.orm.selectinload(EarlyWarning.indicator),
                     sa.orm.selectinload(EarlyWarning.area))
            .order_by(EarlyWarning.raised_at, EarlyWarning.id))
    return warnings_service.shown(s, actor, list(s.scalars(stmt)))


def by_category(s: Session, actor: Actor, area: Area, start: datetime, end: datetime
                ) -> list[dict]:
    """Cases reported in [start, end) in the area, per 大类 and 小类: reported, accepted,
    closed, open now, overdue now, escalated (黄牌/红牌)."""
    parent = sa.orm.aliased(CaseCategory, name="parent")
    one = lambda cond: sa.func.count().filter(cond)  # noqa: E731
    rows = s.execute(
        sa.select(parent.code.label("group_code"), parent.name.label("group_name"),
                  CaseCategory.code, CaseCategory.name, sa.func.count().label("reported"),
                  one(Case.accepted_at.is_not(None)).label("accepted"),
                  one(Case.closed_at.is_not(None)).label("closed"),
                  one(Case.state.in_(OPEN_STATES)).label("open"),
                  one(Case.overdue).label("overdue"),
                  one(Case.escalation > 0).label("escalated"))
        .join(CaseCategory, CaseCategory.id == Case.category_id)
        .outerjoin(parent, parent.id == CaseCategory.parent_id)
        .where(Case.reported_at >= start, Case.reported_at < end, Case.state != "merged",
               Case.area_id.in_(areas.subtree_ids(area)), visible(actor))
        .group_by(parent.code, parent.name, CaseCategory.code, CaseCategory.name)
        .order_by(CaseCategory.code)).all()
    return [dict(r._mapping) for r in rows]


def case_list(s: Session, actor: Actor, area: Area, cond: Any) -> list[dict]:
    """Open cases of the area under `cond` (overdue, escalated), most urgent first."""
    grid = sa.orm.aliased(Area, name="grid")
    rows = s.execute(
        sa.select(Case.id, Case.code, CaseCategory.name.label("category"), Case.state,
                  grid.name.label("grid"), Case.address, Case.reported_at, Case.due_at,
                  Case.escalation)
        .join(CaseCategory, CaseCategory.id == Case.category_id)
        .join(grid, grid.id == Case.area_id)
        .where(Case.state.in_(OPEN_STATES), cond,
               Case.area_id.in_(areas.subtree_ids(area)), visible(actor))
        .order_by(Case.escalation.desc(), Case.due_at.nulls_last(), Case.id)
        .limit(LIST_LIMIT)).all()
    return [dict(r._mapping) for r in rows]


# --- the workbook --------------------------------------------------------------------------

_TITLE, _HEAD = Font(bold=True, size=14), Font(bold=True, color="FFFFFF")
_FILL = PatternFill("solid", fgColor="1F4E78")
_LOCAL = "%Y-%m-%d %H:%M"


def _local(at: datetime | None) -> str | None:
    return None if at is None else at.astimezone(clock.local_zone()).strftime(_LOCAL)


def _sheet(book: Workbook, title: str, heading: str, headers: list[str],
           rows: list[list], widths: list[int] | None = None) -> None:
    sheet = book.create_sheet(title)
    for i, width in enumerate(widths or [14] * len(headers)):
        sheet.column_dimensions[chr(ord("A") + i)].width = width
    sheet.freeze_panes = "A3"
    sheet.append([safe_cell(sheet, heading, font=_TITLE)])
    sheet.append([safe_cell(sheet, h, font=_HEAD, fill=_FILL,
                            alignment=Alignment(horizontal="center")) for h in headers])
    for row in rows:
        append_row(sheet, row)


def workbook(f: dict) -> bytes:
    """The report as .xlsx: one sheet per part, every user text through server.xlsx."""
    book = Workbook(write_only=True)
    period = f"{_local(f['start'])} 至 {_local(f['end'])}"
    name = f["area"]["name"]
    p = f["performance"]
    measures = [label for _, label in MEASURES]

    def row(r: dict) -> list:
        return [r.get(k) for k, _ in MEASURES]

    counts = f["warning_counts"]
    summary = [["汇总", *row(p["total"])]]
    _sheet(book, "汇总", f"{name} 领导报表 {period}", ["", *measures], summary + [
        [], ["预警（本期新发）", counts["total"]],
        *[[LEVEL_LABELS[k], v] for k, v in counts["by_level"].items()],
        ["本期解除预警", len(f["warnings_resolved"])],
        ["超期案件（当前）", len(f["overdue"])], ["督办案件（当前）", len(f["escalated"])]],
        [18] + [12] * len(measures))
    _sheet(book, "按部门", f"{name} 部门综合评价 {period}", ["部门", *measures],
           [[d["name"], *row(d)] for d in p["departments"]], [24] + [12] * len(measures))
    _sheet(book, "按网格", f"{name} 网格综合评价 {period}", ["网格编码", "网格", *measures],
           [[g["code"], g["name"], *row(g)] for g in p["grids"]],
           [18, 20] + [12] * len(measures))
    _sheet(book, "按类别", f"{name} 案件类别 {period}",
           ["大类", "小类编码", "小类", "上报数", "立案数", "结案数", "在办", "超期", "督办"],
           [[c["group_name"], c["code"], c["name"], c["reported"], c["accepted"],
             c["closed"], c["open"], c["overdue"], c["escalated"]] for c in f["categories"]],
           [14, 12, 20] + [10] * 6)
    for title, rows in (("超期案件", f["overdue"]), ("督办案件", f["escalated"])):
        _sheet(book, title, f"{name} {title}（当前在办）", ["案件编号", "类别", "状态", "网格",
                                                         "地址", "上报时间", "期限", "督办"],
               [[c["code"], c["category"], c["state"], c["grid"], c["address"],
                 _local(c["reported_at"]), _local(c["due_at"]),
                 {0: "", 1: "黄牌", 2: "红牌"}.get(c["escalation"], "")] for c in rows],
               [24, 16, 12, 18, 30, 18, 18, 8])
    for title, rows in (("预警发布", f["warnings_raised"]), ("预警解除", f["warnings_resolved"])):
        _sheet(book, title, f"{name} {title} {period}",
               ["指标", "区域", "等级", "状态", "数值", "阈值", "发布时间", "关闭时间", "原因"],
               [[w["indicator"]["name"], w["area"]["name"], LEVEL_LABELS[w["level"]],
                 WARNING_STATES[w["state"]], "<5" if w["suppressed"] else w["value"],
                 w["threshold"], _local(w["raised_at"]), _local(w["closed_at"]),
                 w["reason"]] for w in rows], [22, 18, 10, 10, 10, 10, 18, 18, 24])
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


# --- storing, listing, downloading ---------------------------------------------------------


def store(s: Session, store_: Any, area: Area, kind: str, start: datetime, end: datetime,
          data: bytes, created_by: int | None) -> LeaderReport | None:
    """Keep the file and its row; None when the weekly report exists already (two workers
    at once: the partial unique index keeps one)."""
    key = blob_key(hashlib.sha256(data).hexdigest(), "xlsx")
    store_.put(key, data)
    stmt = (sa.dialects.postgresql.insert(LeaderReport)
            .values(area_id=area.id, kind=kind, start=start, end=end, blob_key=key,
                    size=len(data), created_by=created_by, created_at=clock.now())
            .on_conflict_do_nothing(index_elements=["area_id", "start"],
                                    index_where=sa.text("kind = 'weekly'"))
            .returning(LeaderReport.id))
    report_id = s.scalar(stmt)
    return None if report_id is None else s.get(LeaderReport, report_id)


def download_path(report: LeaderReport) -> str:
    return f"/reports/leaders/{report.id}/file"


def scoped(actor: Actor) -> sa.Select:
    """Reports the actor may see: their own on-demand ones; weekly ones of areas in scope."""
    actor.require("stats:read")
    R = LeaderReport
    return sa.select(R).where(sa.or_(
        sa.and_(R.kind == "on_demand", R.created_by == actor.user_id),
        sa.and_(R.kind == "weekly", areas.in_scope(R.area_id, actor))))


def list_reports(s: Session, actor: Actor, filters: dict, page: Any) -> list[LeaderReport]:
    from server import db

    stmt = scoped(actor).order_by(LeaderReport.start.desc(), LeaderReport.id.desc())
    for key in ("area_id", "kind"):
        if filters.get(key) is not None:
            stmt = stmt.where(getattr(LeaderReport, key) == filters[key])
    return db.paginate(s, stmt, page)


def open_report(s: Session, actor: Actor, store_: Any, report_id: int
                ) -> tuple[Any, str]:
    """The report's file (audited) and its download name."""
    report = s.scalars(scoped(actor).where(LeaderReport.id == report_id)).first()
    if report is None:
        raise NotFound("No such report")
    area = s.get(Area, report.area_id)
    audit.record(s, actor, "leader_report_downloaded", "leader_report", report.id,
                 changes={"area_id": report.area_id, "kind": report.kind})
    day = report.start.astimezone(clock.local_zone()).strftime("%Y%m%d")
    return store_.open(report.blob_key), f"{area.code}_{day}_报表.xlsx"


# --- on demand (a job) and weekly (the worker) ---------------------------------------------


def request_report(s: Session, actor: Actor, data: dict) -> jobs.Job:
    """Queue an on-demand report of an area in scope (202 + job)."""
    actor.require("stats:read")
    area = areas.get_area(s, actor, data["area_id"])
    if not areas.area_in_scope(s, actor, area.id):
        raise NotFound("No such area")
    return jobs.create(s, actor, JOB_KIND, area_id=area.id, params={
        "area_id": area.id, "start": data["start"].isoformat(),
        "end": data["end"].isoformat()})


def run_report_job(s: Session, actor: Actor, run: jobs.JobRun) -> dict:
    from flask import current_app

    from server.storage.blobs import blob_store

    area = areas.get_area(s, actor, run.params["area_id"])
    start, end = (datetime.fromisoformat(run.params[k]) for k in ("start", "end"))
    data = workbook(figures(s, actor, area, start, end,
                            current_app.config["CASE_SCORE_WEIGHTS"]))
    report = store(s, blob_store(), area, "on_demand", start, end, data, actor.user_id)
    audit.record(s, actor, "leader_report_built", "leader_report", report.id,
                 changes={"area_id": area.id})
    return {"report_id": report.id, "download": download_path(report), "size": len(data)}


def last_week(now: datetime) -> tuple[datetime, datetime]:
    """The last whole week, Monday 00:00 to Monday 00:00 local time, in UTC."""
    local = now.astimezone(clock.local_zone())
    monday = (local - timedelta(days=local.weekday())).replace(hour=0, minute=0, second=0,
                                                               microsecond=0)
    return monday - timedelta(days=7), monday


def weekly_due(s: Session, budget_s: float = 20.0, now: datetime | None = None,
               store_: Any = None, weights: dict | None = None) -> dict:
    """The worker's task: last week's report for each street and district without one,
    each told to the area's leaders; stops after `budget_s` (the next run goes on)."""
    from flask import current_app

    from server.storage.blobs import blob_store

    start, end = last_week(now or clock.now())
    store_ = store_ or blob_store()
    weights = weights or current_app.config["CASE_SCORE_WEIGHTS"]
    done = (sa.select(LeaderReport.id).where(LeaderReport.area_id == Area.id,
                                             LeaderReport.kind == "weekly",
                                             LeaderReport.start == start))
    todo = s.scalars(sa.select(Area).where(Area.level.in_(REPORT_LEVELS), ~sa.exists(done))
                     .order_by(Area.code)).all()
    began, built = time.monotonic(), 0
    actor = report_actor()
    for area in todo:
        if time.monotonic() - began > budget_s:
            break
        report = store(s, store_, area, "weekly", start, end,
                       workbook(figures(s, actor, area, start, end, weights)), None)
        if report is None:
            continue
        leaders = s.scalars(sa.select(Membership.user_id).where(
            Membership.area_id == area.id, Membership.role.in_(REPORT_RECIPIENTS))).all()
        notify(s, leaders, "leader_report", {
            "report_id": report.id, "area": area.name, "download": download_path(report),
            "start": _local(start), "end": _local(end)}, collapse_key=f"report:{area.id}")
        built += 1
    return {"built": built} if built else {}
