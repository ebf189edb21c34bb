"""Request and response shapes of the register. Personal data leaves masked; the clear
values come only from the audited reveal endpoint."""

from __future__ import annotations

import re
from datetime import UTC, date

from geoalchemy2.shape import to_shape
from marshmallow import ValidationError, fields, validate, validates

from geo.fields import POINT_REFERENCE, GpsFix, Point
from grid.registry import models as m
from grid.registry.validation import normalize_id_number, normalize_uscc
from server import audit
from server.api import Schema
from server.validators import validate_mobile


def _one_of(choices: dict) -> validate.OneOf:
    return validate.OneOf(list(choices), labels=list(choices.values()))


def Id(**kwargs) -> fields.Integer:  # noqa: N802 - a field factory, used like a field class
    """The id of another record: a positive bigint (a larger number is a 422, not a 500)."""
    return fields.Integer(validate=validate.Range(1, 2**63 - 1), **kwargs)


# Months from 1900 (indicators go back no further): the pattern is the rule.
MONTH_PATTERN = r"^(19[0-9]{2}|[2-9][0-9]{3})-(0[1-9]|1[0-2])$"
_MONTH_RE = re.compile(MONTH_PATTERN)


def parse_month(value: str) -> date:
    """"2026-03" → date(2026, 3, 1). Raises ValidationError."""
    match = _MONTH_RE.match(value or "")
    if not match:
        raise ValidationError("A month is YYYY-MM (e.g. 2026-03).")
    return date(int(match.group(1)), int(match.group(2)), 1)


class Month(fields.Field):
    """A calendar month as "YYYY-MM" ⇄ the date of its first day."""

    def __init__(self, **kwargs) -> None:
        metadata = kwargs.pop("metadata", {})
        metadata.setdefault("example", "2026-03")
        super().__init__(metadata={"type": "string", "pattern": MONTH_PATTERN,
                                   "description": "YYYY-MM, from 1900-01", **metadata}, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs) -> date:
        if not isinstance(value, str):
            raise ValidationError("A month is YYYY-MM (e.g. 2026-03).")
        return parse_month(value)

    def _serialize(self, value, attr, obj, **kwargs) -> str | None:
        return None if value is None else value.strftime("%Y-%m")


class CodeLabel(fields.Function):
    """`<field>_label`: the Chinese term of a code field, from its catalogue in the models
    (BUILDING_USES…), read-only. A field of its own so that sync pages (grid.sync.pages)
    build the same text in SQL."""

    def __init__(self, source: str, codes: dict[str, str]) -> None:
        self.source, self.codes = source, codes
        super().__init__(lambda record: codes[getattr(record, source)], metadata={
            "type": "string", "description": f"`{source}` in Chinese: {', '.join(codes.values())}"})


class RecordSchema(Schema):
    """Fields every register record shows."""

    id = fields.Integer(dump_only=True)
    area_id = fields.Integer(dump_only=True)
    source = fields.String(dump_only=True)
    location = fields.Method("dump_location", dump_only=True, allow_none=True,
                             metadata=POINT_REFERENCE)
    gps = fields.Method("dump_gps", dump_only=True)
    needs_review = fields.Boolean(dump_only=True)
    review_reasons = fields.List(fields.String(), dump_only=True, allow_none=True)
    ended_at = fields.AwareDateTime(dump_only=True, allow_none=True)
    end_reason = fields.String(dump_only=True, allow_none=True)
    created_by = fields.Integer(dump_only=True, allow_none=True)
    updated_by = fields.Integer(dump_only=True, allow_none=True)
    created_at = fields.AwareDateTime(dump_only=True)
    updated_at = fields.AwareDateTime(dump_only=True)
    version = fields.Integer(dump_only=True)

    def dump_location(self, record):
        """The stored WGS-84 point, in the crs the request asked for (?crs=)."""
        if record.location is None:
            return None
        point = to_shape(record.location)
        return Point()._serialize(GpsFix(lon=point.x, lat=point.y), "location", record)

    def dump_gps(self, record):
        return {"crs": record.gps_crs, "raw_lon": record.gps_raw_lon, "raw_lat": record.gps_raw_lat,
                "accuracy_m": record.gps_accuracy_m,
                "captured_at": record.gps_captured_at.astimezone(UTC).isoformat()
                if record.gps_captured_at else None, "device_id": record.gps_device_id}


class WriteSchema(Schema):
    """Fields every create or update may carry."""

    client_uuid = fields.UUID(load_only=True, metadata={
        "description": "Creates: the phone's id for this request; a resend returns the original."})
    version = fields.Integer(load_only=True, validate=validate.Range(min=1),
                             metadata={"description": "Updates: the version edited."})
    location = Point()


class BuildingSchema(RecordSchema):
    name = fields.String()
    address = fields.String(allow_none=True)
    use = fields.String()
    use_label = CodeLabel("use", m.BUILDING_USES)
    floors = fields.Integer(allow_none=True)
    units = fields.Integer(allow_none=True)
    is_crowded_rental = fields.Boolean()
    is_unsafe = fields.Boolean()
    is_live_work_store = fields.Boolean()
    leader_name = fields.String(allow_none=True)
    leader_phone = fields.String(attribute="leader_phone_masked", allow_none=True)


class BuildingWriteSchema(WriteSchema):
    name = fields.String(validate=validate.Length(1, 100), metadata={"example": "3幢"})
    address = fields.String(validate=validate.Length(max=200), allow_none=True)
    use = fields.String(validate=_one_of(m.BUILDING_USES))
    floors = fields.Integer(validate=validate.Range(1, 200), allow_none=True)
    units = fields.Integer(validate=validate.Range(1, 100), allow_none=True)
    is_crowded_rental = fields.Boolean()
    is_unsafe = fields.Boolean()
    is_live_work_store = fields.Boolean()
    leader_name = fields.String(validate=validate.Length(max=50), allow_none=True)
    leader_phone = fields.String(validate=validate_mobile, allow_none=True)


class BuildingCreateSchema(BuildingWriteSchema):
    name = fields.String(required=True, validate=validate.Length(1, 100))
    location = Point(required=True)


class HouseSchema(RecordSchema):
    building_id = fields.Integer()
    unit = fields.String(allow_none=True)
    floor = fields.Integer(allow_none=True)
    room = fields.String()
    use = fields.String()
    use_label = CodeLabel("use", m.HOUSE_USES)
    floor_area_m2 = fields.Float(allow_none=True)
    owner_name = fields.String(allow_none=True)
    owner_phone = fields.String(attribute="owner_phone_masked", allow_none=True,
                                metadata={"description": "Masked: 138****5678"})
    rental_start = fields.Date(allow_none=True)
    rental_end = fields.Date(allow_none=True)


class HouseWriteSchema(WriteSchema):
    location = Point(metadata={"description": "Optional; if sent, in one of your grids."})
    unit = fields.String(validate=validate.Length(max=16), allow_none=True,
                         metadata={"example": "2单元"})
    floor = fields.Integer(validate=validate.Range(-10, 200), allow_none=True)
    room = fields.String(validate=validate.Length(1, 32), metadata={"example": "301"})
    use = fields.String(validate=_one_of(m.HOUSE_USES))
    floor_area_m2 = fields.Float(validate=validate.Range(0, 100_000, min_inclusive=False),
                                 allow_none=True)
    owner_name = fields.String(validate=validate.Length(max=50), allow_none=True)
    owner_phone = fields.String(validate=validate_mobile, allow_none=True)
    rental_start = fields.Date(allow_none=True)
    rental_end = fields.Date(allow_none=True)


class HouseCreateSchema(HouseWriteSchema):
    building_id = Id(required=True, metadata={"description": "The building (its grid is "
                                                             "the house's)."})
    room = fields.String(required=True, validate=validate.Length(1, 32),
                         metadata={"example": "301"})


class HouseholdSchema(RecordSchema):
    house_id = fields.Integer(allow_none=True)
    household_no = fields.String(allow_none=True)
    head_person_id = fields.Integer(allow_none=True)
    type = fields.String()
    type_label = CodeLabel("type", m.HOUSEHOLD_TYPES)


class HouseholdWriteSchema(WriteSchema):
    house_id = Id(metadata={"description": "Moves the household (and its members) there."})
    household_no = fields.String(validate=validate.Length(1, 32), allow_none=True,
                                 metadata={"example": "330183000123"})
    head_person_id = Id(allow_none=True, metadata={"description": "A current member."})
    type = fields.String(validate=_one_of(m.HOUSEHOLD_TYPES))


class HouseholdCreateSchema(WriteSchema):
    house_id = Id(allow_none=True, metadata={
        "description": "The house (its grid is the household's); without one, `location` "
                       "is required and decides the grid."})
    household_no = fields.String(validate=validate.Length(1, 32), allow_none=True,
                                 metadata={"example": "330183000123"})
    type = fields.String(validate=_one_of(m.HOUSEHOLD_TYPES))


class TagSchema(Schema):
    id = fields.Integer(dump_only=True)
    kind = fields.String(dump_only=True)
    tag = fields.String(required=True, validate=validate.OneOf([*m.CARE_TAGS, *m.KEY_TAGS]))
    label = fields.Method("tag_label", dump_only=True)
    start_date = fields.Date()
    end_date = fields.Date(dump_only=True, allow_none=True)
    note = fields.String(validate=validate.Length(max=500), allow_none=True)

    def tag_label(self, row) -> str:
        return m.CARE_TAGS.get(row.tag) or m.KEY_TAGS.get(row.tag, row.tag)


class PersonSchema(RecordSchema):
    name = fields.String()
    id_number = fields.String(attribute="id_number_masked", allow_none=True,
                              metadata={"description": "Masked: the region code only, "
                                                       "330183************"})
    phone = fields.String(attribute="phone_masked", allow_none=True,
                          metadata={"description": "Masked: 138****5678"})
    sex = fields.String(allow_none=True)
    # set by registry.with_tags for the actor: the birth date only with person:read_pii
    birth_date = fields.Date(attribute="birth_date_shown", allow_none=True, metadata={
        "description": "Only for callers with person:read_pii (null for others: next to the "
                       "masked ID number it would give the number away)"})
    age_band = fields.String(allow_none=True, dump_only=True, metadata={
        "description": "年龄段: 10 years of the age reached this year (this year − birth "
                       "year), e.g. 60-69; 100+",
        "example": "60-69"})
    ethnicity = fields.String(allow_none=True)
    household_id = fields.Integer(allow_none=True)
    relation_to_head = fields.String(allow_none=True)
    population_type = fields.String()
    population_type_label = CodeLabel("population_type", m.POPULATION_TYPES)
    registration_situation = fields.String()
    status = fields.String()
    tags = fields.List(fields.Nested(TagSchema), dump_only=True)


class PersonWriteSchema(WriteSchema):
    name = fields.String(validate=validate.Length(1, 50), metadata={"example": "王秀英"})
    id_number = fields.String(allow_none=True, metadata={"example": "110101202311012176"})
    phone = fields.String(validate=validate_mobile, allow_none=True)
    ethnicity = fields.String(validate=validate.Length(max=16), allow_none=True)
    relation_to_head = fields.String(validate=_one_of(m.RELATIONS), allow_none=True)
    population_type = fields.String(validate=_one_of(m.POPULATION_TYPES))
    registration_situation = fields.String(validate=_one_of(m.REGISTRATION_SITUATIONS))

    @validates("id_number")
    def _id_number(self, value, **kwargs):
        if value is not None:
            normalize_id_number(value)  # raises ValidationError with the reason


class PersonCreateSchema(PersonWriteSchema):
    name = fields.String(required=True, validate=validate.Length(1, 50))
    household_id = Id(allow_none=True, metadata={
        "description": "The household (its grid is the person's); without one, `location` "
                       "is required and decides the grid."})
    tags = fields.List(fields.Nested(TagSchema), load_default=list)


class PersonEndSchema(Schema):
    status = fields.String(required=True, validate=validate.OneOf(["moved_out", "deceased"]))
    reason = fields.String(validate=validate.Length(max=64), allow_none=True)
    version = fields.Integer(validate=validate.Range(min=1))


class PersonMoveSchema(Schema):
    household_id = Id(required=True)
    relation_to_head = fields.String(validate=_one_of(m.RELATIONS), allow_none=True)
    version = fields.Integer(validate=validate.Range(min=1))


class EndSchema(Schema):
    reason = fields.String(required=True, validate=validate.Length(1, 64),
                           metadata={"example": "demolished"})
    version = fields.Integer(validate=validate.Range(min=1))


class TagEndSchema(Schema):
    end_date = fields.Date()


class StaySchema(Schema):
    household_id = fields.Integer()
    relation_to_head = fields.String(allow_none=True)
    since = fields.AwareDateTime()
    until = fields.AwareDateTime(allow_none=True)


class RevealQuerySchema(audit.PurposeSchema):
    """Why the clear data is needed (audited): a purpose code and a text."""


class RevealSchema(Schema):
    id_number = fields.String(allow_none=True)
    phone = fields.String(allow_none=True)


class ListQuerySchema(Schema):
    area_id = Id(metadata={"description": "Only this area's subtree"})
    q = fields.String(metadata={"description": "Part of the name"})
    needs_review = fields.Boolean()
    include_ended = fields.Boolean(load_default=False)


class BuildingQuerySchema(ListQuerySchema):
    use = fields.String(validate=_one_of(m.BUILDING_USES))


class PersonQuerySchema(ListQuerySchema):
    household_id = Id()
    population_type = fields.String(validate=_one_of(m.POPULATION_TYPES))
    status = fields.String(validate=_one_of(m.PERSON_STATUSES))
    sex = fields.String(validate=validate.OneOf(["M", "F"]))
    tag = fields.String(validate=validate.OneOf([*m.CARE_TAGS, *m.KEY_TAGS]))
    id_number = fields.String(metadata={"description": "Exact ID number (blind index)"})


class OrganisationSchema(RecordSchema):
    uscc = fields.String(allow_none=True)
    name = fields.String()
    kind = fields.String()
    kind_label = CodeLabel("kind", m.ORG_KINDS)
    industry = fields.String(allow_none=True)
    legal_representative = fields.String(allow_none=True)
    employees = fields.Integer(allow_none=True)
    building_id = fields.Integer(allow_none=True)
    address = fields.String(allow_none=True)
    phone = fields.String(allow_none=True)
    risk_flags = fields.List(fields.String())


class OrganisationWriteSchema(WriteSchema):
    location = Point(metadata={"description": "The main gate (GB/T 37149: WGS-84, ≥ 6 "
                                              "decimals); decides the grid."})
    uscc = fields.String(allow_none=True, metadata={
        "description": "统一社会信用代码 (GB 32100)", "example": "91110000600037341L"})
    name = fields.String(validate=validate.Length(1, 200))
    kind = fields.String(validate=_one_of(m.ORG_KINDS))
    industry = fields.String(validate=validate.Length(max=64), allow_none=True)
    legal_representative = fields.String(validate=validate.Length(max=50), allow_none=True)
    employees = fields.Integer(validate=validate.Range(0, 10_000_000), allow_none=True)
    building_id = Id(allow_none=True)
    address = fields.String(validate=validate.Length(max=200), allow_none=True)
    phone = fields.String(validate=validate.Regexp(r"^[0-9+()\- ]{3,32}$", error=(
        "A telephone number: digits, spaces, + - ( ), up to 32.")), allow_none=True)
    risk_flags = fields.List(fields.String(validate=_one_of(m.ORG_RISK_FLAGS)),
                             validate=validate.Length(max=len(m.ORG_RISK_FLAGS) * 2))

    @validates("uscc")
    def _uscc(self, value, **kwargs):
        if value is not None:
            normalize_uscc(value)  # raises ValidationError with the reason


class OrganisationCreateSchema(OrganisationWriteSchema):
    name = fields.String(required=True, validate=validate.Length(1, 200))
    location = Point(required=True, metadata={
        "description": "The main gate (GB/T 37149: WGS-84, ≥ 6 decimals); decides the grid."})


class OrganisationQuerySchema(ListQuerySchema):
    kind = fields.String(validate=_one_of(m.ORG_KINDS))
    industry = fields.String()
    risk_flag = fields.String(validate=_one_of(m.ORG_RISK_FLAGS))
    building_id = Id()
    uscc = fields.String(validate=validate.Length(max=18))


class IndicatorWriteSchema(Schema):
    """One month's indicators; the fields sent are set (null clears one), others kept."""

    employees = fields.Integer(validate=validate.Range(0, 10_000_000), allow_none=True)
    water_m3 = fields.Float(validate=validate.Range(0, 1e12), allow_none=True)
    electricity_kwh = fields.Float(validate=validate.Range(0, 1e12), allow_none=True)
    wage_arrears_yuan = fields.Float(validate=validate.Range(0, 999_999_999_999.99),
                                     allow_none=True,
                                     metadata={"description": "Yuan, kept to the fen (0.01)"})
    social_insurance_arrears_yuan = fields.Float(
        validate=validate.Range(0, 999_999_999_999.99), allow_none=True,
        metadata={"description": "社保欠缴: unpaid social insurance, yuan (to the fen)"})
    rent_arrears_yuan = fields.Float(
        validate=validate.Range(0, 999_999_999_999.99), allow_none=True,
        metadata={"description": "欠租: unpaid rent, yuan (to the fen)"})


class IndicatorSchema(Schema):
    month = Month()
    employees = fields.Integer(allow_none=True)
    water_m3 = fields.Float(allow_none=True)
    electricity_kwh = fields.Float(allow_none=True)
    wage_arrears_yuan = fields.Float(allow_none=True)
    social_insurance_arrears_yuan = fields.Float(allow_none=True)
    rent_arrears_yuan = fields.Float(allow_none=True)
    recorded_by = fields.Integer(allow_none=True)
    recorded_at = fields.AwareDateTime()


class IndicatorQuerySchema(Schema):
    from_ = Month(data_key="from", metadata={"description": "First month (inclusive)"})
    to = Month(metadata={"description": "Last month (inclusive)"})


class HouseQuerySchema(ListQuerySchema):
    building_id = Id()
    use = fields.String(validate=_one_of(m.HOUSE_USES))


class HouseholdQuerySchema(ListQuerySchema):
    house_id = Id()
    type = fields.String(validate=_one_of(m.HOUSEHOLD_TYPES))


class HistorySchema(Schema):
    id = fields.Integer()
    at = fields.AwareDateTime()
    actor_id = fields.Integer(allow_none=True)
    action = fields.String()
    changes = fields.Function(lambda e: audit.shown_changes(e.changes), allow_none=True,
                              metadata={"type": "object"})

