"""The columns of each kind of ledger: which headers a community's spreadsheet may use for
them (Chinese as the ledgers have them, or the API's English field names), how a cell is
read, and how a row becomes the values of a register row.

Every rule is the API's own: text lengths, patterns and ranges are checked by the fields of
grid.registry.schemas (`_api`), ID numbers and USCCs by grid.registry.validation, mobiles by
server.validators, points by geo.fields.Point; enumerations accept the labels of the dicts in
grid.registry.models (户籍人口 → registered) and their keys. Personal data is encrypted,
blind-indexed and masked by server.pii as the register's service does.

Nothing here touches the database: the service checks grids, duplicates and households.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from marshmallow import ValidationError

from geo.fields import Point
from grid.registry import models as m
from grid.registry import schemas as rs
from grid.registry.scope import ID_FIELD, PHONE_FIELD
from grid.registry.validation import id_number_facts, normalize_id_number, normalize_uscc
from server import pii
from server.validators import validate_mobile

# The field name server.pii binds a building leader's phone to (as the register's
# `_set_phone` does: "<table>.phone").
LEADER_PHONE_FIELD = "buildings.phone"


# --- cells ---------------------------------------------------------------------------------


def cell_text(value: Any) -> str | None:
    """A cell as trimmed text (None when empty). Whole numbers lose their ".0"."""
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip()
    elif isinstance(value, bool):
        text = "是" if value else "否"
    elif isinstance(value, int):
        text = str(value)
    elif isinstance(value, float):
        text = str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)
    elif isinstance(value, datetime):
        text = (value.date().isoformat() if value.time() == datetime.min.time()
                else value.isoformat())
    elif isinstance(value, date):
        text = value.isoformat()
    else:
        text = str(value).strip()
    if "\x00" in text:
        raise ValidationError("NUL characters are not allowed.")
    return text or None


Parse = Callable[[str, Any], Any]  # (text, raw cell) → value; raises ValidationError


@dataclass(frozen=True)
class Column:
    field: str
    label: str  # the header exports write (and the first one imports accept)
    aliases: tuple[str, ...] = ()
    parse: Parse = lambda text, raw: text
    required: bool = False


def header_key(text: Any) -> str:
    """A header as matched: no spaces, no "*" marks, no "(…)" notes, lower case.
    "* 身份证号（18位）" → "身份证号"; "ID_Number" → "id_number"."""
    key = re.sub(r"[（(【\[].*?[）)】\]]", "", str(text or ""))
    return re.sub(r"[\s*＊※:：]", "", key).lower()


def _api(schema: type, name: str) -> Parse:
    """The API's own field: its type conversion and validators."""
    api_field = schema().fields[name]
    return lambda text, raw: api_field.deserialize(text)


def _choice(labels: dict[str, str], synonyms: dict[str, str] | None = None,
            what: str = "value") -> Parse:
    """An enumeration by its Chinese label (the models' dicts), its key, or a synonym."""
    lookup = {k.lower(): k for k in labels} | {v: k for k, v in labels.items()}
    lookup |= synonyms or {}
    shown = "、".join(labels.values())

    def parse(text: str, raw: Any) -> str:
        key = lookup.get(text.lower())
        if key is None:
            raise ValidationError(f"Unknown {what} {text!r}: one of {shown}.")
        return key

    return parse


_LIST_SPLIT = re.compile(r"[,，;；、|\s]+")


def _choices(labels: dict[str, str], synonyms: dict[str, str] | None = None,
             what: str = "value") -> Parse:
    """Several of an enumeration in one cell ("独居老人、残疾人"), each once, in the
    catalogue's order."""
    one = _choice(labels, synonyms, what)

    def parse(text: str, raw: Any) -> list[str]:
        found = {one(part, part) for part in _LIST_SPLIT.split(text) if part}
        return [k for k in labels if k in found]

    return parse


_TRUE = {"是", "有", "y", "yes", "true", "1", "√", "✓", "✔", "t"}
_FALSE = {"否", "无", "n", "no", "false", "0", "×", "✗", "✘", "f"}


def _flag(text: str, raw: Any) -> bool:
    lowered = text.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValidationError(f"Not a yes/no value {text!r}: 是 or 否.")


def _mobile(text: str, raw: Any) -> str:
    """A mainland mobile (the API's rule), written as ledgers write them: spaces, dashes
    and a +86 prefix are dropped first."""
    number = re.sub(r"[\s\-]", "", text)
    if number.startswith("+86"):
        number = number[3:]
    elif len(number) == 13 and number.startswith("86"):
        number = number[2:]
    validate_mobile(number)
    return number


def _sex(text: str, raw: Any) -> str:
    sex = {"男": "M", "男性": "M", "m": "M", "male": "M",
           "女": "F", "女性": "F", "f": "F", "female": "F"}.get(text.lower())
    if sex is None:
        raise ValidationError(f"Not a sex {text!r}: 男 or 女.")
    return sex


_DATE = re.compile(r"^(\d{4})\D?(\d{1,2})\D?(\d{1,2})日?$")


def _date(text: str, raw: Any) -> date:
    if isinstance(raw, datetime):
        return raw.date()
    if isinstance(raw, date):
        return raw
    match = _DATE.match(text)
    try:
        if match is None:
            raise ValueError
        return date(int(match[1]), int(match[2]), int(match[3]))
    except ValueError:
        raise ValidationError(f"Not a date {text!r}: write it as 1988-06-01.") from None


def _number(text: str, raw: Any) -> float:
    try:
        return float(raw) if isinstance(raw, (int, float)) else float(text)
    except ValueError:
        raise ValidationError(f"Not a number {text!r}.") from None


def _uscc(text: str, raw: Any) -> str:
    return normalize_uscc(text)


def _count(api_parse: Parse, unit: str) -> Parse:
    """An integer the API's field checks, written with or without its unit ("6层")."""
    return lambda text, raw: api_parse(text.removesuffix(unit).strip(), raw)


def _id_number(today: date) -> Parse:
    def parse(text: str, raw: Any) -> str:
        if isinstance(raw, float):
            raise ValidationError("Stored as a number, Excel has lost digits of it: format "
                                  "the column as text and enter it again.")
        return normalize_id_number(text, today=today)

    return parse


_RELATION_SYNONYMS = {
    "本人": "head", "户主本人": "head",
    "妻": "spouse", "夫": "spouse", "妻子": "spouse", "丈夫": "spouse",
    "子": "child", "女": "child", "儿子": "child", "女儿": "child", "长子": "child",
    "次子": "child", "长女": "child", "次女": "child", "养子": "child", "养女": "child",
    "父亲": "parent", "母亲": "parent", "父": "parent", "母": "parent",
    "孙子": "grandchild", "孙女": "grandchild", "外孙子": "grandchild", "外孙女": "grandchild",
    "祖父": "grandparent", "祖母": "grandparent", "外祖父": "grandparent",
    "外祖母": "grandparent", "兄": "sibling", "弟": "sibling", "姐": "sibling",
    "妹": "sibling", "哥哥": "sibling", "弟弟": "sibling", "姐姐": "sibling", "妹妹": "sibling",
    "租客": "tenant", "承租人": "tenant",
}
_POPULATION_SYNONYMS = {
    "户籍": "registered", "户籍人员": "registered", "流动": "floating", "流动人员": "floating",
    "外来人口": "floating", "境外": "foreign", "境外人口": "foreign", "外籍人员": "foreign",
    "未落户": "unsettled", "未落户人口": "unsettled",
}
_SITUATION_SYNONYMS = {"人户一致": "both_here", "人在户在": "both_here"}
_HOUSEHOLD_SYNONYMS = {"户籍": "registered", "流动": "non_registered",
                       "非户籍户": "non_registered", "流动人口户": "non_registered"}
_BUILDING_USE_SYNONYMS = {
    "住宅楼": "residential", "商住": "mixed", "商住楼": "mixed", "商用": "commercial",
    "商铺": "commercial", "办公": "commercial", "厂房": "industrial", "工业厂房": "industrial",
    "公共建筑": "public",
}
_ORG_KIND_SYNONYMS = {
    "公司": "enterprise", "个体户": "individual_business", "机关单位": "government",
    "政府机关": "government", "社会团体": "social_org", "民办非企业单位": "social_org",
}
# Labels such as "低保/需救助" are also accepted by each of their parts.
_CARE_SYNONYMS = {part: key for key, label in m.CARE_TAGS.items() for part in label.split("/")}
_KEY_SYNONYMS = {"社区矫正对象": "community_correction", "刑满释放人员": "released_prisoner",
                 "严重精神障碍患者": "severe_mental_illness"}

_AREA_CODE = Column("area_code", "网格编码", ("所属网格编码", "网格代码", "网格编号", "grid_code"),
                    parse=lambda text, raw: text)
_LON = Column("lon", "经度", ("longitude",), parse=_number)
_LAT = Column("lat", "纬度", ("latitude",), parse=_number)
_CRS = Column("crs", "坐标系", (), parse=_choice({c: c for c in ("wgs84", "gcj02", "bd09")},
                                                 {"gps": "wgs84", "高德": "gcj02",
                                                  "百度": "bd09"}, "coordinate system"))


def columns(kind: str, today: date) -> tuple[Column, ...]:
    """The columns of a ledger of `kind` (persons, households, buildings, organisations).
    Longer than 60 lines because it is a table: one entry per column of the four ledgers."""
    if kind == "persons":
        return (
            Column("name", "姓名", ("人员姓名",), _api(rs.PersonCreateSchema, "name"),
                   required=True),
            Column("id_number", "身份证号", ("公民身份号码", "身份证号码", "身份证", "证件号码"),
                   _id_number(today)),
            Column("sex", "性别", (), _sex),
            Column("birth_date", "出生日期", ("出生年月日",), _date),
            Column("phone", "联系电话", ("手机号码", "手机号", "手机", "电话", "联系方式"),
                   _mobile),
            Column("ethnicity", "民族", (), _api(rs.PersonCreateSchema, "ethnicity")),
            Column("household_no", "户号", ("户编号",),
                   _api(rs.HouseholdCreateSchema, "household_no")),
            Column("household_type", "户类型", ("户别",),
                   _choice(m.HOUSEHOLD_TYPES, _HOUSEHOLD_SYNONYMS, "household type")),
            Column("relation_to_head", "与户主关系", ("户主关系", "关系"),
                   _choice(m.RELATIONS, _RELATION_SYNONYMS, "relation")),
            Column("population_type", "人口类型", ("人员类型", "人口类别"),
                   _choice(m.POPULATION_TYPES, _POPULATION_SYNONYMS, "population type")),
            Column("registration_situation", "户籍情况", ("人户状态", "人户情况"),
                   _choice(m.REGISTRATION_SITUATIONS, _SITUATION_SYNONYMS,
                           "registration situation")),
            Column("care_tags", "关爱对象", ("关爱类别", "关爱人群"),
                   _choices(m.CARE_TAGS, _CARE_SYNONYMS, "care group")),
            Column("key_tags", "重点人员", ("重点人员类别", "重点人群"),
                   _choices(m.KEY_TAGS, _KEY_SYNONYMS, "key-person group")),
            _AREA_CODE,
        )
    if kind == "households":
        return (
            Column("household_no", "户号", ("户编号",),
                   _api(rs.HouseholdCreateSchema, "household_no"), required=True),
            Column("type", "户类型", ("户别", "household_type"),
                   _choice(m.HOUSEHOLD_TYPES, _HOUSEHOLD_SYNONYMS, "household type")),
            _AREA_CODE,
        )
    if kind == "buildings":
        schema = rs.BuildingCreateSchema
        return (
            Column("name", "楼栋名称", ("楼栋", "楼栋号", "楼幢", "建筑名称", "名称"),
                   _api(schema, "name"), required=True),
            Column("address", "地址", ("楼栋地址", "详细地址"), _api(schema, "address")),
            Column("use", "用途", ("建筑用途", "楼栋用途"),
                   _choice(m.BUILDING_USES, _BUILDING_USE_SYNONYMS, "use")),
            Column("floors", "层数", ("楼层数", "总层数", "地上层数"),
                   _count(_api(schema, "floors"), "层")),
            Column("units", "单元数", (), _count(_api(schema, "units"), "个")),
            Column("is_crowded_rental", "群租房", ("是否群租房",), _flag),
            Column("is_unsafe", "危房", ("是否危房",), _flag),
            Column("is_live_work_store", "三合一场所", ("是否三合一场所", "三合一"), _flag),
            Column("leader_name", "楼栋长", ("楼栋长姓名",), _api(schema, "leader_name")),
            Column("leader_phone", "楼栋长电话", ("楼栋长联系电话", "楼栋长手机"), _mobile),
            _LON, _LAT, _CRS, _AREA_CODE,
        )
    if kind == "organisations":
        schema = rs.OrganisationCreateSchema
        return (
            Column("uscc", "统一社会信用代码", ("社会信用代码", "信用代码"), _uscc),
            Column("name", "单位名称", ("企业名称", "名称", "单位"), _api(schema, "name"),
                   required=True),
            Column("kind", "单位类型", ("单位类别", "类型"),
                   _choice(m.ORG_KINDS, _ORG_KIND_SYNONYMS, "kind")),
            Column("industry", "行业", ("所属行业", "行业类别"), _api(schema, "industry")),
            Column("legal_representative", "法定代表人", ("法人代表", "法人", "负责人"),
                   _api(schema, "legal_representative")),
            Column("employees", "从业人数", ("从业人员数", "员工人数", "职工人数"),
                   _count(_api(schema, "employees"), "人")),
            Column("address", "地址", ("单位地址", "经营地址", "注册地址"),
                   _api(schema, "address")),
            Column("phone", "联系电话", ("电话", "单位电话"), _api(schema, "phone")),
            Column("risk_flags", "风险标识", ("风险类别", "风险类型"),
                   _choices(m.ORG_RISK_FLAGS, None, "risk flag")),
            _LON, _LAT, _CRS, _AREA_CODE,
        )
    raise ValueError(kind)


KINDS = ("persons", "households", "buildings", "organisations")


# --- headers -------------------------------------------------------------------------------


@dataclass
class Header:
    """Where each column is in the sheet: {field: (index, header text)}."""

    row: int
    positions: dict[str, tuple[int, str]]
    ignored: list[str] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)  # (header, message)


def match_header(cols: tuple[Column, ...], cells: tuple, row: int) -> Header | None:
    """The header this row would be, or None when it names none of the required columns
    (a title row above the header, say)."""
    lookup = {}
    for col in cols:
        for name in (col.label, *col.aliases, col.field):
            lookup.setdefault(header_key(name), col)
    header = Header(row, {})
    for index, cell in enumerate(cells):
        text = "" if cell is None else str(cell).strip()
        if not text:
            continue
        col = lookup.get(header_key(text))
        if col is None:
            header.ignored.append(text)
        elif col.field in header.positions:
            header.problems.append((text, f"Same column as {header.positions[col.field][1]!r}."))
        else:
            header.positions[col.field] = (index, text)
    if not any(c.field in header.positions for c in cols if c.required):
        return None
    return header


# --- rows ----------------------------------------------------------------------------------


@dataclass
class Row:
    number: int
    values: dict[str, Any]
    errors: list[tuple[str, str]]  # (field, message)


def read_row(cols: tuple[Column, ...], header: Header, number: int, cells: tuple) -> Row | None:
    """The parsed cells of a data row (None for an empty row)."""
    values: dict[str, Any] = {}
    errors: list[tuple[str, str]] = []
    empty = True
    width = len(cells)
    for col in cols:
        position = header.positions.get(col.field)
        raw = cells[position[0]] if position is not None and position[0] < width else None
        try:
            text = cell_text(raw)
        except ValidationError as exc:
            errors.append((col.field, _message(exc)))
            empty = False
            continue
        if text is None:
            if col.required:
                errors.append((col.field, "Required."))
            continue
        empty = False
        try:
            values[col.field] = col.parse(text, raw)
        except ValidationError as exc:
            errors.append((col.field, _message(exc)))
    if empty:
        return None
    return Row(number, values, errors)


def _message(exc: ValidationError) -> str:
    messages = exc.messages
    if isinstance(messages, dict):
        messages = [f"{k}: {' '.join(v) if isinstance(v, list) else v}"
                    for k, v in messages.items()]
    return " ".join(str(x) for x in messages)


def location(row: Row) -> Any:
    """The row's point (geo.fields.Point: ranges, swapped lon/lat, crs → WGS-84) or None."""
    lon, lat = row.values.pop("lon", None), row.values.pop("lat", None)
    crs = row.values.pop("crs", None) or "wgs84"
    if lon is None and lat is None:
        return None
    if lon is None or lat is None:
        row.errors.append(("lon" if lon is None else "lat", "Give 经度 and 纬度 together."))
        return None
    try:
        return Point().deserialize({"lon": lon, "lat": lat, "crs": crs})
    except ValidationError as exc:
        row.errors.append(("lon", _message(exc)))
        return None


def person_fields(row: Row, key_tags_allowed: bool, today: date) -> dict[str, Any]:
    """persons columns of a row: the ID number encrypted, blind-indexed and masked, sex
    and birth date derived from it (a ledger's own 性别/出生日期 must agree), the phone
    encrypted, indexed and masked."""
    v = row.values
    number = v.get("id_number")
    sex, born = v.get("sex"), v.get("birth_date")
    if number is not None:
        id_sex, id_born = id_number_facts(number)
        if sex is not None and sex != id_sex:
            row.errors.append(("sex", "Does not agree with the ID number."))
        if born is not None and born != id_born:
            row.errors.append(("birth_date", "Does not agree with the ID number."))
        sex, born = id_sex, id_born
    elif born is not None and (born > today or born.year < 1890):
        row.errors.append(("birth_date", "Not a plausible birth date."))
    if v.get("key_tags") and not key_tags_allowed:
        row.errors.append(("key_tags", "Key-person groups need the permission "
                                       "'person:read_key_tags'."))
    if "household_type" in v and "household_no" not in v:
        row.errors.append(("household_type", "A household type needs a 户号."))
    if row.errors:
        return {}
    phone = v.get("phone")
    return {
        "name": v["name"],
        "id_number_enc": pii.encrypt(number, ID_FIELD),
        "id_number_bidx": pii.blind_index(number, ID_FIELD),
        "id_number_masked": pii.mask_id_number(number),
        "sex": sex, "birth_date": born,
        "phone_enc": pii.encrypt(phone, PHONE_FIELD),
        "phone_bidx": pii.blind_index(phone, PHONE_FIELD),
        "phone_masked": pii.mask_phone(phone),
        "ethnicity": v.get("ethnicity"),
        "relation_to_head": v.get("relation_to_head"),
        "population_type": v.get("population_type", "registered"),
        "registration_situation": v.get("registration_situation", "both_here"),
    }


def building_fields(row: Row) -> dict[str, Any]:
    v = row.values
    fix = location(row)
    if row.errors:
        return {}
    phone = v.get("leader_phone")
    return {
        "name": v["name"], "address": v.get("address"), "use": v.get("use", "residential"),
        "floors": v.get("floors"), "units": v.get("units"),
        "is_crowded_rental": v.get("is_crowded_rental", False),
        "is_unsafe": v.get("is_unsafe", False),
        "is_live_work_store": v.get("is_live_work_store", False),
        "leader_name": v.get("leader_name"),
        "leader_phone_enc": pii.encrypt(phone, LEADER_PHONE_FIELD),
        "leader_phone_masked": pii.mask_phone(phone),
        **gps_fields(fix),
    }


def organisation_fields(row: Row) -> dict[str, Any]:
    v = row.values
    fix = location(row)
    if row.errors:
        return {}
    return {
        "uscc": v.get("uscc"), "name": v["name"], "kind": v.get("kind", "enterprise"),
        "industry": v.get("industry"), "legal_representative": v.get("legal_representative"),
        "employees": v.get("employees"), "address": v.get("address"), "phone": v.get("phone"),
        "risk_flags": v.get("risk_flags") or [],
        **gps_fields(fix),
    }


def household_fields(row: Row) -> dict[str, Any]:
    if row.errors:
        return {}
    return {"household_no": row.values["household_no"],
            "type": row.values.get("type", "registered")}


def gps_fields(fix: Any) -> dict[str, Any]:
    """The GPS columns of a register row for a ledger's point (no accuracy, time or device:
    a ledger does not know them)."""
    if fix is None:
        return {"location": None, "gps_crs": None, "gps_raw_lon": None, "gps_raw_lat": None}
    return {"location": fix.wkt, "gps_crs": fix.crs, "gps_raw_lon": fix.raw_lon,
            "gps_raw_lat": fix.raw_lat}
