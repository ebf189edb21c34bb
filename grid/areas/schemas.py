"""Request and response shapes for areas, memberships, departments and locate."""

from __future__ import annotations

from marshmallow import fields, validate

from geo.crs import CRS
from geo.fields import GeoJSONGeometry
from server.api import ErrorSchema, Schema
from server.auth import permissions
from server.auth.permissions import ROLES


class AreaSchema(Schema):
    id = fields.Integer(dump_only=True)
    code = fields.String(metadata={"example": "330183001002005"})
    name = fields.String(metadata={"example": "东门社区第5网格"})
    level = fields.String(metadata={"example": "grid"})
    parent_id = fields.Integer(allow_none=True)
    area_m2 = fields.Float(allow_none=True, metadata={"description": "Area in m²"})
    timezone = fields.String()
    version = fields.Integer()


class AreaDetailSchema(AreaSchema):
    boundary = GeoJSONGeometry(allow_none=True, dump_only=True,
                               metadata={"description": "With ?geometry=true; in ?crs="})


class AreaQuerySchema(Schema):
    parent_id = fields.Integer()
    level = fields.String()
    q = fields.String(metadata={"description": "Part of the name, or a code prefix"})
    within_id = fields.Integer(metadata={"description": "Only areas in this subtree"})


class AreaReadQuerySchema(Schema):
    geometry = fields.Boolean(load_default=False)
    crs = fields.String(validate=validate.OneOf(CRS))


class TreeQuerySchema(Schema):
    root_id = fields.Integer()
    depth = fields.Integer(load_default=0, validate=validate.Range(min=0, max=10),
                           metadata={"description": "Levels below the root; 0 = all"})


class TreeNodeSchema(Schema):
    id = fields.Integer()
    code = fields.String()
    name = fields.String()
    level = fields.String()
    children = fields.List(fields.Nested(lambda: TreeNodeSchema()))


class AreaUpdateSchema(Schema):
    name = fields.String(validate=validate.Length(1, 100))
    code = fields.String(validate=validate.Regexp(r"^\d{6,24}$"))
    boundary = GeoJSONGeometry(metadata={"description": "GeoJSON Polygon/MultiPolygon, WGS-84"})
    repair = fields.Boolean(load_default=False)
    version = fields.Integer(validate=validate.Range(min=1))


class AreaMoveSchema(Schema):
    parent_id = fields.Integer(required=True)
    code = fields.String(validate=validate.Regexp(r"^\d{6,24}$"), metadata={
        "description": "The area's new code when the new parent needs one (a community "
                       "moving to another street); the codes below it follow"})
    version = fields.Integer(validate=validate.Range(min=1))


class ImportQuerySchema(Schema):
    dry_run = fields.Boolean(load_default=False)
    repair = fields.Boolean(load_default=False)
    tolerance_m = fields.Float(load_default=1.0, validate=validate.Range(min=0, max=1000))
    overlap_min_m2 = fields.Float(load_default=1.0, validate=validate.Range(min=0))
    gap_min_m2 = fields.Float(load_default=100.0, validate=validate.Range(min=0))


class FeatureCollectionSchema(Schema):
    class Meta:
        unknown = "include"

    type = fields.String(required=True, validate=validate.Equal("FeatureCollection"))
    features = fields.List(fields.Dict(), required=True)


class ProblemSchema(Schema):
    kind = fields.String()
    message = fields.String()
    feature = fields.Integer()
    code = fields.String()
    location = fields.List(fields.Float())
    area_m2 = fields.Float()
    other_code = fields.String()


class ImportReportSchema(Schema):
    ok = fields.Boolean()
    dry_run = fields.Boolean()
    features = fields.Integer()
    errors = fields.List(fields.Nested(ProblemSchema))
    warnings = fields.List(fields.Nested(ProblemSchema))
    created = fields.List(fields.String())
    updated = fields.List(fields.String())


class ImportErrorSchema(ErrorSchema):
    """422 of an import: the one error shape plus the full report (nothing was written)."""

    report = fields.Nested(ImportReportSchema)


class ContactSchema(Schema):
    role = fields.String()
    user_id = fields.Integer(metadata={"description": "Absent in the public card"})
    name = fields.String()
    phone = fields.String(allow_none=True, metadata={"description": "Masked: 138****5678"})


class ChainItemSchema(Schema):
    id = fields.Integer()
    code = fields.String()
    name = fields.String()
    level = fields.String()


class GridCardSchema(Schema):
    area = fields.Nested(AreaSchema)
    chain = fields.List(fields.Nested(ChainItemSchema))
    chiefs = fields.List(fields.Nested(ContactSchema))
    workers = fields.List(fields.Nested(ContactSchema))
    counts = fields.Dict(keys=fields.String(), values=fields.Integer(), metadata={
        "description": "households, population… from the registry; empty in the public "
                       "card (callers who do not see the area)"})
    boundary = GeoJSONGeometry(allow_none=True, dump_only=True, metadata={
        "description": "GET /areas/{id}/card only; in ?crs="})


_membership_roles = [r for r in ROLES if r not in permissions.ACCOUNT_ONLY_ROLES]


class MembershipSchema(Schema):
    id = fields.Integer(dump_only=True)
    user_id = fields.Integer(required=True)
    area_id = fields.Integer(required=True)
    role = fields.String(required=True, validate=validate.OneOf(_membership_roles))
    created_at = fields.AwareDateTime(dump_only=True)


class MembershipRowSchema(Schema):
    """A membership with the names a console shows next to it."""

    id = fields.Integer(attribute="Membership.id")
    user_id = fields.Integer(attribute="Membership.user_id")
    area_id = fields.Integer(attribute="Membership.area_id")
    role = fields.String(attribute="Membership.role")
    user_name = fields.String(attribute="display_name")
    area_code = fields.String(attribute="code")
    area_name = fields.String(attribute="name")


class MembershipQuerySchema(Schema):
    user_id = fields.Integer()
    area_id = fields.Integer()
    role = fields.String()


class DepartmentSchema(Schema):
    id = fields.Integer(dump_only=True)
    code = fields.String(required=True, validate=validate.Regexp(r"^[A-Za-z0-9_.-]{2,32}$"))
    name = fields.String(required=True, validate=validate.Length(1, 100),
                         metadata={"example": "城市管理局"})
    kind = fields.String(validate=validate.Length(max=32), load_default="其他", allow_none=True,
                         metadata={"example": "城管", "description": "其他 (other) when left out; "
                                   "null on departments made before kinds were required"})
    service_area_id = fields.Integer(required=True)
    phone = fields.String(validate=validate.Length(max=32), allow_none=True)
    version = fields.Integer(dump_only=True)


class DepartmentMemberSchema(Schema):
    user_id = fields.Integer(required=True)
    is_head = fields.Boolean(load_default=False)


class DepartmentMemberOutSchema(Schema):
    department_id = fields.Integer()
    user_id = fields.Integer()
    is_head = fields.Boolean()


class LocateQuerySchema(Schema):
    lon = fields.Float(required=True, allow_nan=False, validate=validate.Range(-180, 180))
    lat = fields.Float(required=True, allow_nan=False, validate=validate.Range(-90, 90))
    crs = fields.String(load_default="wgs84", validate=validate.OneOf(CRS))


class LocateSchema(Schema):
    grid = fields.Nested(ChainItemSchema)
    chain = fields.List(fields.Nested(ChainItemSchema), metadata={"description": "Top first"})
    point = fields.Dict(metadata={"description": "The point in WGS-84 as stored"})
