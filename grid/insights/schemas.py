"""Request and response shapes of the insights API."""

from __future__ import annotations

from marshmallow import ValidationError, fields, validate, validates_schema

from grid.insights.models import (
    HOTSPOT_CLASSES,
    INDICATOR_KINDS,
    LEVELS,
    RECORD_TYPES,
    RISK_LEVELS,
    WARNING_STATES,
)
from grid.registry.schemas import Id, IndicatorSchema, Month
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

# --- warnings: indicators, warnings, leaders' reports ---

_ID = validate.Range(min=1, max=2**63 - 1)
_LEVEL_FIELDS = {level: fields.Float(validate=validate.Range(min=0, max=1e9),
                                     allow_none=True) for level in LEVELS}


class LevelsSchema(Schema.from_dict(_LEVEL_FIELDS)):
    """三色预警: the value (fixed) or the z-score above the baseline (statistical) at which
    each level is reached; yellow ≤ orange ≤ red; a level left out is never reached."""

    @validates_schema
    def _ordered(self, data, **kwargs):
        given = [data[level] for level in LEVELS if data.get(level) is not None]
        if given != sorted(given):
            raise ValidationError("yellow ≤ orange ≤ red.", "_schema")


class CityIndicatorParamsSchema(Schema):
    category_codes = fields.List(fields.String(validate=validate.Length(1, 16)),
                                 validate=validate.Length(max=50), metadata={
                                     "description": "大类/小类 codes (new_cases, "
                                                    "repeated_place); absent: all"})
    min_cases = fields.Integer(validate=validate.Range(1, 10_000), metadata={
        "description": "overdue_rate: open cases a department needs to be measured (5)"})
    radius_m = fields.Float(validate=validate.Range(5, 5_000), metadata={
        "description": "repeated_place: R metres (100)"})
    min_count = fields.Integer(validate=validate.Range(2, 1_000), metadata={
        "description": "repeated_place / repeated_caller: N cases (3)"})
    tags = fields.List(fields.String(validate=validate.Length(1, 32)),
                       validate=validate.Length(1, 20), metadata={
                           "description": "unvisited_care: care groups (elderly_alone)"})
    grace_days = fields.Integer(validate=validate.Range(0, 365), metadata={
        "description": "unvisited_care: days past due before a person counts (0)"})
    month = fields.Date(metadata={"description": "labour_risk: the month (default: this)"})


class _CityIndicatorFields(Schema):
    name = fields.String(validate=validate.Length(1, 100), metadata={"example": "网格日新增案件"})
    description = fields.String(validate=validate.Length(max=2000), allow_none=True)
    window_hours = fields.Integer(validate=validate.Range(1, 24 * 366), metadata={
        "description": "The window measured (M days = 24·M)"})
    every_minutes = fields.Integer(validate=validate.Range(1, 7 * 24 * 60), metadata={
        "description": "How often the worker evaluates it"})
    params = fields.Nested(CityIndicatorParamsSchema)
    thresholds = fields.Nested(LevelsSchema, metadata={"description": "Experts' fixed thresholds"})
    statistical = fields.Nested(LevelsSchema, metadata={
        "description": "z-scores above the area's own baseline (its values at the "
                       "baseline_runs runs before the window)"})
    baseline_runs = fields.Integer(validate=validate.Range(3, 400))
    active = fields.Boolean(metadata={"description": "false: switched off"})


class CityIndicatorCreateSchema(_CityIndicatorFields):
    # Required on create (optional on update): the document says so, as the validator does.
    name = fields.String(required=True, validate=validate.Length(1, 100),
                         metadata={"example": "网格日新增案件"})
    window_hours = fields.Integer(required=True, validate=validate.Range(1, 24 * 366),
                                  metadata={"description": "The window measured (M days = 24·M)"})
    every_minutes = fields.Integer(required=True, validate=validate.Range(1, 7 * 24 * 60),
                                   metadata={"description": "How often the worker evaluates it"})
    code = fields.String(required=True, validate=validate.Regexp(r"^[a-z0-9_.-]{2,48}$"),
                         metadata={"example": "grid_daily_cases"})
    kind = fields.String(required=True, validate=validate.OneOf(list(INDICATOR_KINDS)),
                         metadata={"description": ", ".join(f"{k} {v}" for k, v in
                                                            INDICATOR_KINDS.items())})
    area_id = fields.Integer(validate=_ID, allow_none=True, metadata={
        "description": "The area (a district) whose subtree it measures; only an "
                       "administrator may leave it out (everywhere)"})
    area_level = fields.String(validate=validate.Length(1, 32), allow_none=True, metadata={
        "description": "The level measured (grid, community, street…); not for "
                       "overdue_rate (per department)"})

    class Meta:
        ordered = True


class CityIndicatorUpdateSchema(_CityIndicatorFields):
    version = fields.Integer(load_only=True, metadata={"description": "Or If-Match"})


class CityIndicatorSchema(_CityIndicatorFields):
    id = fields.Integer()
    code = fields.String()
    kind = fields.String()
    kind_label = fields.Function(lambda i: INDICATOR_KINDS[i.kind])
    area_id = fields.Integer(allow_none=True)
    area_level = fields.String(allow_none=True)
    params = fields.Dict()
    next_run_at = UtcDateTime(allow_none=True)
    last_run_at = UtcDateTime(allow_none=True)
    version = fields.Integer()


class CityIndicatorQuerySchema(Schema):
    kind = fields.String(validate=validate.OneOf(list(INDICATOR_KINDS)))
    active = fields.Boolean()


class AreaThresholdsSchema(Schema):
    thresholds = fields.Nested(LevelsSchema, allow_none=True)
    statistical = fields.Nested(LevelsSchema, allow_none=True)


class AreaThresholdsOutSchema(AreaThresholdsSchema):
    indicator_id = fields.Integer()
    area_id = fields.Integer()
    updated_at = UtcDateTime()


class SeriesQuerySchema(Schema):
    area_id = fields.Integer(required=True, validate=_ID)
    department_id = fields.Integer(validate=_ID)
    limit = fields.Integer(load_default=100, validate=validate.Range(1, 1000))


class SeriesPointSchema(Schema):
    at = UtcDateTime()
    value = fields.Float(allow_none=True, metadata={
        "description": "null: suppressed (fewer than 5 people, without register access)"})


class SeriesSchema(Schema):
    indicator_id = fields.Integer()
    area_id = fields.Integer()
    department_id = fields.Integer(allow_none=True)
    suppressed = fields.Boolean()
    points = fields.List(fields.Nested(SeriesPointSchema))


class WarningQuerySchema(Schema):
    state = fields.String(validate=validate.OneOf(list(WARNING_STATES)))
    open = fields.Boolean(metadata={"description": "true: raised or acknowledged"})
    level = fields.String(validate=validate.OneOf(LEVELS))
    kind = fields.String(validate=validate.OneOf(list(INDICATOR_KINDS)))
    indicator_id = fields.Integer(validate=_ID)
    area_id = fields.Integer(validate=_ID, metadata={"description": "This area's subtree"})
    department_id = fields.Integer(validate=_ID)
    raised_from = UtcDateTime()
    raised_to = UtcDateTime()
    closed_from = UtcDateTime()
    closed_to = UtcDateTime()


class WarningCountsSchema(Schema):
    total = fields.Integer()
    by_state = fields.Dict(keys=fields.String(), values=fields.Integer())
    by_level = fields.Dict(keys=fields.String(), values=fields.Integer())
    open_by_level = fields.Dict(keys=fields.String(), values=fields.Integer())


class RecordRefSchema(Schema):
    type = fields.String(metadata={"enum": list(RECORD_TYPES)})
    id = fields.Integer()
    code = fields.String()
    state = fields.String()
    name = fields.String()
    area_id = fields.Integer()
    at = UtcDateTime()


class WarningEventSchema(Schema):
    at = UtcDateTime()
    actor_id = fields.Integer(allow_none=True)
    action = fields.String()
    from_state = fields.String(allow_none=True)
    to_state = fields.String(allow_none=True)
    level = fields.String(allow_none=True)
    value = fields.Float(allow_none=True)
    note = fields.String(allow_none=True)


class _NamedRef(Schema):
    id = fields.Integer()
    code = fields.String()
    name = fields.String()


class WarningSchema(Schema):
    id = fields.Integer()
    indicator = fields.Nested(_NamedRef)
    kind = fields.String()
    area = fields.Nested(_NamedRef)
    department_id = fields.Integer(allow_none=True)
    state = fields.String(metadata={"enum": list(WARNING_STATES)})
    state_label = fields.String()
    level = fields.String(metadata={"enum": list(LEVELS)})
    level_label = fields.String()
    value = fields.Float(allow_none=True, metadata={"description": "null when suppressed"})
    threshold = fields.Float(allow_none=True)
    baseline = fields.Float(allow_none=True)
    basis = fields.String(metadata={"enum": ["fixed", "statistical"]})
    record_type = fields.String()
    record_count = fields.Integer(allow_none=True)
    suppressed = fields.Boolean(metadata={
        "description": "An aggregate over fewer than 5 people, shown without figure or "
                       "records to roles without register access"})
    raised_at = UtcDateTime()
    level_at = UtcDateTime()
    seen_at = UtcDateTime()
    acknowledged_at = UtcDateTime(allow_none=True)
    closed_at = UtcDateTime(allow_none=True)
    reason = fields.String(allow_none=True)
    case_id = fields.Integer(allow_none=True)
    actions = fields.List(fields.String())
    version = fields.Integer()


class WarningDetailSchema(WarningSchema):
    records = fields.List(fields.Nested(RecordRefSchema))
    timeline = fields.List(fields.Nested(WarningEventSchema))


class WarningNoteSchema(Schema):
    """签收 acknowledge, 解除 resolve: the version and a note."""

    version = fields.Integer(load_only=True, metadata={"description": "Or If-Match"})
    note = fields.String(validate=validate.Length(1, 2000), metadata={
        "description": "What was found / done"})


class WarningDismissSchema(WarningNoteSchema):
    """排除 dismiss: `reason` is required (a 422 naming it, after the version and state
    checks of the action engine)."""

    reason = fields.String(validate=validate.Length(1, 2000), metadata={
        "description": "Why it is not a problem (required)"})


class WarningActionSchema(WarningDismissSchema):
    """转为事件 to_case: the case's category, text, answers and grid."""

    category_code = fields.String(validate=validate.Length(1, 16), metadata={
        "description": "to_case: the 小类 of the case (required)"})
    description = fields.String(validate=validate.Length(1, 4000), metadata={
        "description": "to_case: the case's text (default: the warning's)"})
    attributes = fields.Dict(keys=fields.String(validate=validate.Length(1, 64)), metadata={
        "description": "to_case: the category's typed answers"})
    grid_code = fields.String(validate=validate.Regexp(r"^[0-9]{6,24}$"), metadata={
        "description": "to_case: the grid of the case (default: the warning's area when "
                       "a grid, else that of its first record)"})


class ReportRequestSchema(Schema):
    area_id = fields.Integer(required=True, validate=_ID)
    start = UtcDateTime(required=True)
    end = UtcDateTime(required=True)

    @validates_schema
    def _period(self, data, **kwargs):
        if data.get("start") and data.get("end") and not data["start"] < data["end"]:
            raise ValidationError("start must be before end.", "end")
        if data.get("start") and data.get("end") and (data["end"] - data["start"]).days > 400:
            raise ValidationError("At most 400 days.", "end")


class LeaderReportSchema(Schema):
    id = fields.Integer()
    area_id = fields.Integer()
    kind = fields.String(metadata={"enum": ["weekly", "on_demand"]})
    start = UtcDateTime()
    end = UtcDateTime()
    size = fields.Integer()
    created_at = UtcDateTime()
    download = fields.String(metadata={"description": "GET it for the .xlsx"})


class LeaderReportQuerySchema(Schema):
    area_id = fields.Integer(validate=_ID)
    kind = fields.String(validate=validate.OneOf(["weekly", "on_demand"]))
# --- end warnings ---
