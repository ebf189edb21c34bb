"""An organisation's labour-dispute risk report (劳资纠纷风险评估报告), for a community to
print before it visits: the organisation, its latest score and level with each factor's
contribution, and the monthly series (indicators beside scores). `.xlsx` (through
server/xlsx.py: user text never becomes a formula) or printable HTML (escaped).

Scoped like the organisation (404 outside); always audited (`organisation_risk_report`):
it names the legal representative and shows wage arrears.
"""

from __future__ import annotations

import html
import io
from datetime import date
from typing import Any

from openpyxl import Workbook
from openpyxl.styles import Font
from sqlalchemy.orm import Session

from grid.insights.labour import RiskCard, risk_card
from grid.insights.models import RISK_LEVELS
from server.auth.actor import Actor
from server.xlsx import append_row, safe_cell

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
SERIES_HEADERS = ("月份", "用工人数", "用水(m³)", "用电(kWh)", "工资拖欠(元)", "社保欠缴(元)",
                  "房租拖欠(元)", "风险分", "风险等级")


def _series_rows(card: RiskCard) -> list[list[Any]]:
    scores = {r.month: r for r in card.series}
    months = sorted({i.month for i in card.indicators} | set(scores))
    indicators = {i.month: i for i in card.indicators}
    rows = []
    for month in months:
        i, r = indicators.get(month), scores.get(month)
        rows.append([month.strftime("%Y-%m"),
                     *(_num(getattr(i, name, None)) for name in (
                         "employees", "water_m3", "electricity_kwh", "wage_arrears_yuan",
                         "social_insurance_arrears_yuan", "rent_arrears_yuan")),
                     r.score if r else None, RISK_LEVELS[r.level] if r else None])
    return rows


def _num(value: Any) -> Any:
    return float(value) if value is not None and not isinstance(value, int) else value


def _summary(card: RiskCard) -> list[tuple[str, Any]]:
    org, latest = card.organisation, card.latest
    return [("单位名称", org.name), ("统一社会信用代码", org.uscc or ""),
            ("法定代表人", org.legal_representative or ""), ("行业", org.industry or ""),
            ("地址", org.address or ""),
            ("评估月份", latest.month.strftime("%Y-%m") if latest else "暂无评估"),
            ("风险分", latest.score if latest else ""),
            ("风险等级", RISK_LEVELS[latest.level] if latest else "")]


def _xlsx(card: RiskCard) -> bytes:
    book = Workbook(write_only=True)
    sheet = book.create_sheet("评估结论")
    bold = Font(bold=True)
    sheet.append([safe_cell(sheet, "劳资纠纷风险评估报告", font=Font(bold=True, size=14))])
    for label, value in _summary(card):
        sheet.append([safe_cell(sheet, label, font=bold), safe_cell(sheet, value)])
    sheet.append([])
    sheet.append([safe_cell(sheet, h, font=bold) for h in ("风险因素", "分值")])
    for factor in card.latest.factors if card.latest else []:
        append_row(sheet, [factor["label"], factor["points"]])
    series = book.create_sheet("指标序列")
    series.append([safe_cell(series, h, font=bold) for h in SERIES_HEADERS])
    for row in _series_rows(card):
        append_row(series, row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def _html(card: RiskCard) -> bytes:
    esc = html.escape
    summary = "".join(f"<tr><th>{esc(k)}</th><td>{esc(str(v))}</td></tr>"
                      for k, v in _summary(card))
    factors = "".join(f"<tr><td>{esc(f['label'])}</td><td>+{f['points']}</td></tr>"
                      for f in (card.latest.factors if card.latest else []))
    head = "".join(f"<th>{esc(h)}</th>" for h in SERIES_HEADERS)
    body = "".join("<tr>" + "".join(f"<td>{esc('' if v is None else str(v))}</td>"
                                    for v in row) + "</tr>" for row in _series_rows(card))
    page = f"""<!doctype html><html lang="zh-CN"><head><meta charset="utf-8">
<title>劳资纠纷风险评估报告 - {esc(card.organisation.name)}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse;margin:1em 0}}
th,td{{border:1px solid #999;padding:4px 8px;text-align:left}}@media print{{body{{margin:0}}}}
</style></head><body><h1>劳资纠纷风险评估报告</h1>
<table>{summary}</table><h2>风险因素</h2><table><tr><th>因素</th><th>分值</th></tr>{factors}
</table><h2>指标序列</h2><table><tr>{head}</tr>{body}</table></body></html>"""
    return page.encode()


def build(s: Session, actor: Actor, org_id: int, fmt: str, since: date | None = None,
          until: date | None = None) -> tuple[bytes, str, str]:
    """(content, file name, mimetype) of the report in `fmt` ("xlsx" or "html")."""
    card = risk_card(s, actor, org_id, since, until, action="organisation_risk_report")
    name = f"劳资纠纷风险评估报告-{card.organisation.id}"
    if fmt == "html":
        return _html(card), f"{name}.html", "text/html; charset=utf-8"
    return _xlsx(card), f"{name}.xlsx", XLSX
