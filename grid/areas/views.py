"""Areas API: hierarchy, boundaries import/export, memberships, departments, locate."""

from __future__ import annotations

from flask import current_app
from flask.views import MethodView

from geo import crs as crs_mod
from geo.fields import output_crs
from grid.areas import boundaries, departments, memberships, schemas, service
from server import db
from server.api import Blueprint, etag, expected_version, statuses
from server.auth.actor import current_actor, login_optional, login_required
from server.errors import Unauthorized

blp = Blueprint("areas", __name__, url_prefix="/areas", description="Areas and grids (区域/网格)")
members_blp = Blueprint("memberships", __name__, url_prefix="/memberships",
                        description="Who works where (人员归属)")
dept_blp = Blueprint("departments", __name__, url_prefix="/departments",
                     description="Functional departments (职能部门)")
geo_blp = Blueprint("geo", __name__, url_prefix="/geo", description="Locating points")
blueprints = [blp, members_blp, dept_blp, geo_blp]


def _with_geometry(area, include: bool) -> dict:
    """The area's fields plus its boundary as GeoJSON built by PostGIS (never by mutating
    the ORM object, which would try to write the dict back)."""
    fields = ("id", "code", "name", "level", "parent_id", "area_m2", "timezone", "version")
    view = {name: getattr(area, name) for name in fields}
    view["boundary"] = service.area_geometry(db.session(), area.id) if include else None
    return view


@blp.route("")
@blp.arguments(schemas.AreaQuerySchema, location="query")
@blp.response(200, schemas.AreaSchema(many=True))
@blp.paginate()
@login_required
def list_areas(filters, pagination_parameters):
    """Areas visible to the caller (their subtrees and the chain above them)."""
    return service.list_areas(db.session(), current_actor(), filters, pagination_parameters)


@blp.route("/tree")
@blp.arguments(schemas.TreeQuerySchema, location="query")
@blp.response(200, schemas.TreeNodeSchema(many=True))
@login_required
def tree(args):
    """The hierarchy as a tree (no geometry)."""
    return service.area_tree(db.session(), current_actor(), args.get("root_id"), args["depth"])


@blp.route("/by-code/<code>")
@blp.arguments(schemas.AreaReadQuerySchema, location="query")
@blp.response(200, schemas.AreaDetailSchema)
@login_required
def by_code(args, code):
    """One area by its administrative code (e.g. 330183001002005)."""
    area = service.get_area_by_code(db.session(), current_actor(), code)
    return _with_geometry(area, args["geometry"]), 200, etag(area.version)


@blp.route("/<int:area_id>")
class AreaById(MethodView):
    @blp.arguments(schemas.AreaReadQuerySchema, location="query")
    @blp.response(200, schemas.AreaDetailSchema)
    @login_required
    def get(self, args, area_id):
        """One area; `?geometry=true` adds the boundary (in `?crs=`)."""
        area = service.get_area(db.session(), current_actor(), area_id)
        return _with_geometry(area, args["geometry"]), 200, etag(area.version)

    @blp.arguments(schemas.AreaUpdateSchema)
    @blp.response(200, schemas.AreaDetailSchema)
    @login_required
    def patch(self, data, area_id):
        """Rename, re-code or replace the boundary (validated like an import)."""
        version = expected_version(data)
        with db.unit_of_work() as s:
            area = service.update_area(s, current_actor(), area_id, data, version)
        return _with_geometry(area, "boundary" in data), 200, etag(area.version)


@blp.route("/<int:area_id>/children")
@blp.response(200, schemas.AreaSchema(many=True))
@blp.paginate()
@login_required
def children(area_id, pagination_parameters):
    actor, s = current_actor(), db.session()
    service.get_area(s, actor, area_id)
    return service.list_areas(s, actor, {"parent_id": area_id}, pagination_parameters)


@blp.route("/<int:area_id>/move", methods=["POST"])
@blp.arguments(schemas.AreaMoveSchema)
@blp.response(200, schemas.AreaSchema)
@login_required
def move(data, area_id):
    """Move an area (and its subtree) under another parent."""
    version = expected_version(data)
    with db.unit_of_work() as s:
        area = service.move_area(s, current_actor(), area_id, data["parent_id"], version,
                                 data.get("code"))
    return area, 200, etag(area.version)


@blp.route("/<int:area_id>/card")
@blp.response(200, schemas.GridCardSchema)
@login_optional
def card(area_id):
    """网格公示: the grid's name, chain, boundary, chief and workers (phones masked), and
    for those who see the area its counts of households and people. With MAP_PUBLIC_AREAS
    (the default) it answers without login, without counts; otherwise login is needed."""
    actor, public = current_actor(), current_app.config["MAP_PUBLIC_AREAS"]
    if not public and not actor.is_authenticated:
        raise Unauthorized("Log in first: grid cards are not public here")
    return service.grid_card(db.session(), actor, area_id, public=public, boundary=True)


@blp.route("/import", methods=["POST"])
@blp.arguments(schemas.ImportQuerySchema, location="query")
@blp.arguments(schemas.FeatureCollectionSchema)
@blp.response(200, schemas.ImportReportSchema)
@blp.alt_response(201, schema=schemas.ImportReportSchema, description="Imported")
@blp.alt_response(422, schema=schemas.ImportErrorSchema,
                  description="Invalid input, or the import has errors (see `report`)")
@login_required
def import_areas(args, collection):
    """Import a GeoJSON FeatureCollection (properties: code, name, level, parent_code).

    All or nothing: any error → 422 with the full report and nothing written.
    `dry_run=true` → the report only.
    """
    opts = boundaries.Options(repair=args["repair"], tolerance_m=args["tolerance_m"],
                              overlap_min_m2=args["overlap_min_m2"],
                              gap_min_m2=args["gap_min_m2"],
                              max_extent_deg=current_app.config["AREA_MAX_EXTENT_DEG"])
    with db.unit_of_work() as s:
        report = boundaries.import_areas(s, current_actor(), collection,
                                         dry_run=args["dry_run"], opts=opts)
    return report.as_dict(), 200 if args["dry_run"] else 201


@blp.route("/<int:area_id>/export.geojson")
@blp.response(200, schemas.FeatureCollectionSchema)
@login_required
def export(area_id):
    """The area and its subtree as a FeatureCollection (`?crs=` for AMap/Baidu)."""
    return boundaries.export_subtree(db.session(), current_actor(), area_id, output_crs())


@members_blp.route("")
class Memberships(MethodView):
    @members_blp.arguments(schemas.MembershipQuerySchema, location="query")
    @members_blp.response(200, schemas.MembershipRowSchema(many=True))
    @members_blp.paginate()
    @login_required
    def get(self, filters, pagination_parameters):
        return memberships.list_memberships(db.session(), current_actor(), filters,
                                            pagination_parameters)

    @members_blp.arguments(schemas.MembershipSchema)
    @members_blp.response(201, schemas.MembershipSchema)
    @login_required
    def post(self, data):
        """Put a user in an area with a role (idempotent)."""
        with db.unit_of_work() as s:
            return memberships.add_membership(s, current_actor(), data)


@members_blp.route("/<int:membership_id>", methods=["DELETE"])
@members_blp.response(204)
@login_required
def delete_membership(membership_id):
    with db.unit_of_work() as s:
        memberships.remove_membership(s, current_actor(), membership_id)


@dept_blp.route("")
class Departments(MethodView):
    @dept_blp.response(200, schemas.DepartmentSchema(many=True))
    @dept_blp.paginate()
    @login_required
    def get(self, pagination_parameters):
        return departments.list_departments(db.session(), current_actor(),
                                             pagination_parameters)

    @dept_blp.arguments(schemas.DepartmentSchema)
    @dept_blp.response(201, schemas.DepartmentSchema)
    @login_required
    def post(self, data):
        with db.unit_of_work() as s:
            return departments.create_department(s, current_actor(), data)


@dept_blp.route("/<int:department_id>/members", methods=["POST"])
@dept_blp.arguments(schemas.DepartmentMemberSchema)
@dept_blp.response(200, schemas.DepartmentMemberOutSchema)
@login_required
def add_department_member(data, department_id):
    with db.unit_of_work() as s:
        return departments.add_department_member(s, current_actor(), department_id,
                                                 data["user_id"], data["is_head"])


@geo_blp.route("/locate")
@geo_blp.arguments(schemas.LocateQuerySchema, location="query")
@geo_blp.response(200, schemas.LocateSchema)
@statuses(404)
@db.read_only
@login_required
def locate(args):
    """The grid a point falls in and its chain of areas; 404 outside every grid."""
    lon, lat = crs_mod.to_wgs84(args["lon"], args["lat"], args["crs"])
    chain = service.locate(db.session(), lon, lat)
    items = [{"id": a.id, "code": a.code, "name": a.name, "level": a.level} for a in chain]
    return {"grid": items[-1], "chain": items, "point": {"lon": lon, "lat": lat}}
