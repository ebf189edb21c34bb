"""Request and response shapes of the insights API."""

from __future__ import annotations

from marshmallow import fields, validate

from grid.insights.models import HOTSPOT_CLASSES, RISK_LEVELS  # hotspots
from grid.registry.schemas import Id, IndicatorSchema, Month  # hotspots
from server.api import Schema, UtcDateTime

# --- hotspots: hot spots and labour risk ---


class HotspotQuerySchema(Schema):
    category = fields.String(required=True, validate=validate.Length(1, 16), metadata={
        "description": "Category code (a 大类 counts its 小类)", "example": "0501"})
    area_id = Id(required=True, metadata={"description": "Area (its subtree) in your scope"})
    hotspot_class = fields.String(data_key="class", validate=validate.OneOf(HOTSPOT_CLASSES),
                                  metadata={"description": "Only hot spots of this class"})


class HotspotRunCreateSchema(Schema):
    """A run of one category over an area, as a job; settings default to README's."""

    category = fields.String(required=True, validate=validate.Length(1, 16), metadata={
        "description": "Category code (a 大类 counts its 小类)", "example": "0501"})
    area_id = Id(required=True)
    window_days = fields.Integer(validate=validate.Range(1, 366))
    baseline_weeks = fields.Integer(validate=validate.Range(1, 104))
    baseline_slices = fields.Integer(validate=validate.Range(1, 12))
    cell_m = fields.Float(validate=validate.Range(50, 5000))
    alpha = fields.Float(validate=validate.Range(0.0001, 0.2))
    min_count = fields.Integer(validate=validate.Range(1, 1000))


class HotspotRunSchema(Schema):
    id = fields.Integer()
    area_id = fields.Integer()
    window_start = UtcDateTime()
    window_end = UtcDateTime()
    baseline_start = UtcDateTime()
    settings = fields.Dict(metadata={"description": "cell_m, window_days, baseline_weeks, "
                                                    "baseline_slices, alpha, min_count, srid"})
    cells = fields.Integer(metadata={"description": "Cells tested (n of the FDR control)"})
    window_cases = fields.Integer()
    created_at = UtcDateTime()


class HotspotSchema(Schema):
    id = fields.Integer()
    area_id = fields.Integer(metadata={"description": "The grid under its centre"})
    shape = fields.Dict(metadata={"description": "GeoJSON MultiPolygon (WGS-84): its cells"})
    count = fields.Integer(metadata={"description": "Cases in the window"})
    expected = fields.Float(metadata={"description": "Expected at the area's average"})
    baseline_expected = fields.Float(metadata={
        "description": "Expected at its own baseline rate"})
    z = fields.Float(metadata={"description": "Getis-Ord Gi* z-score of its strongest cell"})
    p = fields.Float(metadata={"description": "Exact Poisson p of the focal sum"})
    q = fields.Float(metadata={"description": "Benjamini–Hochberg adjusted p"})
    hot_slices = fields.Integer(metadata={"description": "Baseline sub-periods it was hot"})
    hotspot_class = fields.String(data_key="class", attribute="class",
                                  metadata={"enum": list(HOTSPOT_CLASSES)})
    class_label = fields.String(metadata={"example": "新出现"})
    case_ids = fields.List(fields.Integer(), metadata={
        "description": "Its cases of the window that you may see"})


class HotspotListSchema(Schema):
    run = fields.Nested(HotspotRunSchema, allow_none=True)
    hotspots = fields.List(fields.Nested(HotspotSchema))


class FactorSchema(Schema):
    factor = fields.String(metadata={"example": "wage_arrears"})
    label = fields.String(metadata={"example": "工资拖欠 2 个月"})
    value = fields.Float()
    points = fields.Integer(metadata={"example": 35})


class OrganisationRiskSchema(Schema):
    organisation_id = fields.Integer()
    organisation_name = fields.String()
    uscc = fields.String(allow_none=True)
    area_id = fields.Integer()
    month = Month()
    score = fields.Integer(metadata={"description": "0–100"})
    level = fields.String(metadata={"enum": list(RISK_LEVELS)})
    level_label = fields.String(metadata={"example": "高风险"})
    factors = fields.List(fields.Nested(FactorSchema))


class RiskQuerySchema(Schema):
    month = Month(required=True)
    area_id = Id()
    level = fields.String(validate=validate.OneOf(RISK_LEVELS))


class RiskSeriesQuerySchema(Schema):
    from_ = Month(data_key="from", metadata={"description": "First month (default: 11 "
                                                            "months before `to`)"})
    to = Month(metadata={"description": "Last month (default: this month)"})


class RiskReportQuerySchema(RiskSeriesQuerySchema):
    format = fields.String(load_default="xlsx", validate=validate.OneOf(("xlsx", "html")))


class RiskPointSchema(Schema):
    month = Month()
    score = fields.Integer()
    level = fields.String(metadata={"enum": list(RISK_LEVELS)})
    factors = fields.List(fields.Nested(FactorSchema))


class RiskCardSchema(Schema):
    organisation_id = fields.Integer()
    organisation_name = fields.String()
    latest = fields.Nested(RiskPointSchema, allow_none=True)
    series = fields.List(fields.Nested(RiskPointSchema))
    indicators = fields.List(fields.Nested(IndicatorSchema))
# --- end hotspots ---
