"""Deterministic demo data (fixed seed): a district near 119.96 E 30.05 N (富阳区) with
3 streets, 10 communities and about 60 grids that tile each community without gaps or
overlaps, departments, and an account for every role with its memberships (README).

The areas go through the same import service as a city's GeoJSON would, so the demo is
validated by the checks it demonstrates. Run once by `make run` (`flask seed-demo`).
"""

from __future__ import annotations

import random
from collections.abc import Iterator

import shapely
import sqlalchemy as sa
from shapely.geometry import LineString, MultiPoint, Polygon, mapping
from shapely.ops import split
from sqlalchemy.orm import Session

from grid.areas import boundaries
from grid.areas import memberships as area_memberships
from grid.areas import service as area_service
from grid.areas.models import Area, Department, DepartmentMember, Membership
from server.auth import permissions as P
from server.auth import service as auth_service
from server.auth.actor import Actor
from server.auth.models import User, UserRole

SEED = 20261122
DEMO_PASSWORD = "Demo-grid-2026"

CITY = ("330100", "杭州市")
DISTRICT = ("330183", "富阳区")
STREETS = [("富春街道", ["东门社区", "西门社区", "秋丽社区", "恩波社区"]),
           ("东洲街道", ["东洲社区", "五丰村", "黄公望村"]),
           ("春江街道", ["春江社区", "丰联村", "八一村"])]
DEPARTMENTS = [("CG", "城市管理局", "城管"), ("SCJG", "市场监督管理局", "市场监管"),
               ("ZJ", "住房和城乡建设局", "住建"), ("YJ", "应急管理局", "应急"),
               ("PCS", "富春派出所", "派出所"), ("MZ", "民政局", "民政"),
               ("SW", "水务集团", "水务"), ("GD", "供电公司", "供电")]

# username, display name, phone, roles, (membership area code, role) or department code
DEMO_ACCOUNTS = [
    ("admin", "系统管理员", None, [P.ADMIN], None),
    ("district", "富阳区管理员", "13800000001", [P.DISTRICT_ADMIN], ("330183", P.DISTRICT_ADMIN)),
    ("auditor", "审计员", None, [P.AUDITOR], None),
    ("dispatcher", "富春街道派遣员", "13800000002", [P.STREET_DISPATCHER],
     ("330183001", P.STREET_DISPATCHER)),
    ("dispatcher2", "东洲街道派遣员", "13800000012", [P.STREET_DISPATCHER],
     ("330183002", P.STREET_DISPATCHER)),
    ("staff", "东门社区工作人员", "13800000003", [P.COMMUNITY_STAFF],
     ("330183001001", P.COMMUNITY_STAFF)),
    ("chief", "东门社区网格长", "13800000004", [P.GRID_CHIEF],
     ("330183001001001", P.GRID_CHIEF)),
    ("worker", "东门社区第1网格网格员", "13800000005", [P.GRID_WORKER],
     ("330183001001001", P.GRID_WORKER)),
    ("worker2", "东洲社区第1网格网格员", "13800000015", [P.GRID_WORKER],
     ("330183002001001", P.GRID_WORKER)),
    ("handler", "城管处置人员", "13800000006", [P.DEPARTMENT_HANDLER], "CG"),
    ("resident", "居民张三", "13900000001", [P.RESIDENT], ("330183001001", P.RESIDENT)),
]

# The district: an irregular polygon around 富阳 (WGS-84), about 6 km x 6 km.
DISTRICT_OUTLINE = [(119.925, 30.025), (119.962, 30.018), (119.995, 30.028),
                    (120.002, 30.055), (119.993, 30.082), (119.958, 30.088),
                    (119.927, 30.078), (119.918, 30.052), (119.925, 30.025)]


def _jittered_line(rng: random.Random, start: tuple, end: tuple, wiggle: float) -> LineString:
    """A cut line from start to end with a few jittered vertices (roads and rivers)."""
    points = [start]
    for t in (0.25, 0.5, 0.75):
        x = start[0] + (end[0] - start[0]) * t + rng.uniform(-wiggle, wiggle)
        y = start[1] + (end[1] - start[1]) * t + rng.uniform(-wiggle, wiggle)
        points.append((x, y))
    points.append(end)
    return LineString(points)


def _cut(rng: random.Random, polygon: Polygon, parts: int, vertical: bool) -> list[Polygon]:
    """Split a polygon into `parts` strips with jittered cut lines."""
    minx, miny, maxx, maxy = polygon.bounds
    pieces = [polygon]
    for k in range(1, parts):
        t = k / parts + rng.uniform(-0.05, 0.05)
        if vertical:
            x = minx + (maxx - minx) * t
            line = _jittered_line(rng, (x, miny - 0.01), (x, maxy + 0.01), (maxx - minx) * 0.02)
        else:
            y = miny + (maxy - miny) * t
            line = _jittered_line(rng, (minx - 0.01, y), (maxx + 0.01, y), (maxy - miny) * 0.02)
        next_pieces = []
        for piece in pieces:
            next_pieces.extend(g for g in split(piece, line).geoms if g.area > 0)
        pieces = next_pieces
    return pieces


def _grids(rng: random.Random, community: Polygon, count: int) -> list[Polygon]:
    """Voronoi cells of random seeds, clipped to the community: an exact tiling."""
    minx, miny, maxx, maxy = community.bounds
    seeds = []
    while len(seeds) < count:
        p = shapely.Point(rng.uniform(minx, maxx), rng.uniform(miny, maxy))
        if community.contains(p):
            seeds.append(p)
    cells = shapely.voronoi_polygons(MultiPoint(seeds), extend_to=community.buffer(0.01))
    out = []
    for cell in cells.geoms:
        piece = cell.intersection(community)
        if not piece.is_empty and piece.area > 0:
            out.append(piece)
    return out


def _north_west_first(polys: list) -> list:
    """Number west→east, north→south (DB11/T 2157): rows by latitude, then longitude."""
    def key(p):
        c = p.representative_point()
        return (-round(c.y, 3), c.x)
    return sorted(polys, key=key)


def district_features(rng: random.Random | None = None, streets: list | None = None,
                      grids_per_community: tuple[int, int] = (5, 7)) -> Iterator[dict]:
    """GeoJSON features of the demo district, parents first (deterministic for a seed)."""
    rng = rng or random.Random(SEED)
    streets = streets or STREETS
    district = Polygon(DISTRICT_OUTLINE)
    yield _feature(CITY[0], CITY[1], "city", None, district.buffer(0.02))
    yield _feature(DISTRICT[0], DISTRICT[1], "district", CITY[0], district)
    street_polys = _north_west_first(_cut(rng, district, len(streets), vertical=True))
    street_polys = sorted(street_polys, key=lambda p: p.representative_point().x)
    for si, ((street_name, communities), street_poly) in enumerate(
            zip(streets, street_polys, strict=True), 1):
        street_code = f"{DISTRICT[0]}{si:03d}"
        yield _feature(street_code, street_name, "street", DISTRICT[0], street_poly)
        community_polys = _north_west_first(
            _cut(rng, street_poly, len(communities), vertical=False))
        for ci, (community_name, community_poly) in enumerate(
                zip(communities, community_polys, strict=True), 1):
            community_code = f"{street_code}{ci:03d}"
            yield _feature(community_code, community_name, "community", street_code,
                           community_poly)
            count = rng.randint(*grids_per_community)
            cells = _north_west_first(_grids(rng, community_poly, count))
            for gi, cell in enumerate(cells, 1):
                yield _feature(f"{community_code}{gi:03d}", f"{community_name}第{gi}网格", "grid",
                               community_code, cell)


def _feature(code: str, name: str, level: str, parent: str | None, geom) -> dict:
    return {"type": "Feature", "geometry": mapping(geom),
            "properties": {"code": code, "name": name, "level": level, "parent_code": parent}}


SYSTEM = Actor(user_id=None, roles=frozenset({P.ADMIN}),
               permissions=frozenset({"area:manage", "membership:manage", "user:manage",
                                      "service:manage"}))


def seed(s: Session, force: bool = False) -> str:
    """Create the demo district and accounts once; a second run changes nothing."""
    if not force and s.scalar(sa.select(User.id).where(User.username == "admin")):
        return "demo data already present"
    features = list(district_features())
    report = boundaries.import_areas(s, SYSTEM, {"type": "FeatureCollection",
                                                 "features": features},
                                     dry_run=False, opts=boundaries.Options())
    by_code = {a.code: a for a in s.scalars(sa.select(Area))}
    district = by_code[DISTRICT[0]]
    departments = {}
    for code, name, kind in DEPARTMENTS:
        dept = s.scalars(sa.select(Department).where(Department.code == code)).first()
        if dept is None:
            dept = Department(code=code, name=name, kind=kind, service_area_id=district.id)
            s.add(dept)
            s.flush()
        departments[code] = dept
    for username, name, phone, roles, place in DEMO_ACCOUNTS:
        user = s.scalars(sa.select(User).where(User.username == username)).first()
        if user is None:
            user = auth_service._new_user(s, username, name, phone, DEMO_PASSWORD, roles)
        if isinstance(place, tuple):
            area_memberships.add_membership(s, SYSTEM, {"user_id": user.id,
                                                    "area_id": by_code[place[0]].id,
                                                    "role": place[1]})
        elif isinstance(place, str) and s.get(
                DepartmentMember, (departments[place].id, user.id)) is None:
            s.add(DepartmentMember(department_id=departments[place].id, user_id=user.id))
    s.flush()
    cases = seed_cases(s, departments)
    services = seed_services(s)
    grids = sum(1 for f in features if f["properties"]["level"] == "grid")
    memberships = s.scalar(sa.select(sa.func.count()).select_from(Membership))
    return (f"demo district created: {len(report.created)} areas ({grids} grids), "
            f"{len(DEPARTMENTS)} departments, {len(DEMO_ACCOUNTS)} accounts, "
            f"{memberships} memberships, {cases} cases, {services} services "
            f"(password {DEMO_PASSWORD})")


# --- cases in every state -------------------------------------------------------------------

# 大类 → department code; a few 小类 go elsewhere.
CATEGORY_DEPARTMENTS = {"01": "CG", "02": "CG", "03": "ZJ", "04": "YJ", "05": "CG", "06": "MZ",
                        "07": "YJ", "08": "MZ", "09": "CG", "0402": "SW", "0404": "SW",
                        "0703": "SCJG", "0902": "GD"}
# (sub-category, grid, description, address, the actions that bring it to its state)
DEMO_CASES = [
    ("0102", "330183001001001", "小区门口垃圾堆放两天未清运", "东门路12号", []),
    ("0503", "330183001001001", "消防通道被私家车占用", "东门路18号", ["accept"]),
    ("0501", "330183001001002", "菜场门口流动摊贩占道", "农贸市场东门", ["accept", "dispatch"]),
    ("0901", "330183001001001", "人行道井盖松动", "富春路与东门路口",
     ["accept", "dispatch", "sign"]),
    ("0903", "330183001001002", "交通护栏被撞倒", "秋丽路3号", ["accept", "dispatch", "sign",
                                                             "handle"]),
    ("0104", "330183001001001", "路面油污", "东门路5号",
     ["accept", "dispatch", "sign", "handle", "verify"]),
    ("0201", "330183001001001", "楼道小广告", "东门新村5幢",
     ["accept", "dispatch", "sign", "handle", "verify", "close"]),
    ("0506", "330183001001001", "夜间露天烧烤油烟扰民", "东门夜市",
     ["accept", "dispatch", "sign", "handle", "verify", "close", "evaluate"]),
    ("0801", "330183001001001", "咨询社保卡补办", "东门社区", ["reject"]),
    ("0504", "330183001001002", "楼下乱堆建材", "秋丽新村2幢",
     ["accept", "dispatch", "return"]),
    ("0101", "330183001001001", "屋顶违章搭建", "东门新村8幢",
     ["accept", "dispatch", "sign", "request_backlog", "approve"]),
    ("0905", "330183001001002", "垃圾箱破损", "秋丽路8号", ["request_void", "approve"]),
]


def _photo(s: Session, actor: Actor, seed: int) -> int:
    import io

    from flask import current_app
    from PIL import Image

    from server.storage import service as storage
    from server.storage.blobs import blob_store

    buffer = io.BytesIO()
    Image.new("RGB", (320, 240), (40 + seed * 17 % 200, 120, 90)).save(buffer, "JPEG")
    attachment, _ = storage.upload(s, actor, blob_store(), buffer.getvalue(),
                                   max_bytes=current_app.config["PHOTO_MAX_BYTES"])
    return attachment.id


def seed_cases(s: Session, departments: dict) -> int:
    """Categories routed to the demo departments, and cases in every state of the loop,
    moved there through the case service by the demo accounts themselves. Longer than 60
    lines because it is a script: one step per state of the loop, in order."""
    from geo.fields import GpsFix
    from grid.cases.actions import act
    from grid.cases.intake import report_case
    from grid.cases.models import Case, CaseCategory
    from server.auth.permissions import permissions_for

    for category in s.scalars(sa.select(CaseCategory).where(CaseCategory.parent_id.is_not(None))):
        code = CATEGORY_DEPARTMENTS.get(category.code) or CATEGORY_DEPARTMENTS[category.code[:2]]
        category.default_department_id = departments[code].id
    if s.scalar(sa.select(Case.id).limit(1)) is not None:
        return 0

    def actor(username: str) -> Actor:
        user = s.scalars(sa.select(User).where(User.username == username)).one()
        roles = frozenset(s.scalars(sa.select(UserRole.role).where(UserRole.user_id == user.id)))
        return area_service.resolve_scope(s, Actor(user_id=user.id, roles=roles,
                                                   permissions=permissions_for(roles)))

    who = {name: actor(name) for name in ("resident", "worker", "dispatcher", "handler",
                                          "district", "chief")}
    by_action = {"accept": "dispatcher", "reject": "dispatcher", "dispatch": "dispatcher",
                 "sign": "handler", "return": "handler", "handle": "handler",
                 "verify": "worker", "close": "dispatcher", "evaluate": "resident",
                 "request_backlog": "handler", "request_void": "dispatcher",
                 "approve": "district"}
    rng = random.Random(SEED)
    made = 0
    for i, (code, grid, text, address, steps) in enumerate(DEMO_CASES):
        lon, lat = s.execute(sa.select(sa.func.ST_X(sa.func.ST_PointOnSurface(Area.boundary)),
                                       sa.func.ST_Y(sa.func.ST_PointOnSurface(Area.boundary)))
                             .where(Area.code == grid)).one()
        fix = GpsFix(lon=lon + rng.uniform(-3e-4, 3e-4), lat=lat + rng.uniform(-3e-4, 3e-4),
                     accuracy_m=8.0)
        category = s.scalars(sa.select(CaseCategory).where(CaseCategory.code == code)).one()
        reporter = who["worker"] if i % 3 == 0 else who["resident"]
        answers = {a["code"]: a["values"][0]["key"] if a.get("values") else 1
                   for a in category.attributes if a.get("required")}
        case, _, _ = report_case(s, reporter, {
            "category_id": category.id, "location": fix, "address": address,
            "description": text, "attributes": answers})
        for step in steps:
            acting = who[by_action[step]]
            data = {"department_id": category.default_department_id, "reason": "演示",
                    "result": "已按要求处置完毕", "rating": 5, "comment": "处理及时"}
            if step in ("verify", "handle") and category.result_photo_required or \
                    step == "verify":
                data["photo_ids"] = [_photo(s, acting, i * 10 + len(step))]
            if step == "evaluate" and case.reporter_id != acting.user_id:
                acting = reporter
            case = act(s, acting, case.id, step, data, case.version)
        made += 1
    # a worker's own fix on the spot, waiting for verification (自行处置)
    category = s.scalars(sa.select(CaseCategory).where(CaseCategory.code == "0102")).one()
    lon, lat = s.execute(sa.select(sa.func.ST_X(sa.func.ST_PointOnSurface(Area.boundary)),
                                   sa.func.ST_Y(sa.func.ST_PointOnSurface(Area.boundary)))
                         .where(Area.code == "330183001001001")).one()
    report_case(s, who["worker"], {
        "category_id": category.id, "location": GpsFix(lon=lon, lat=lat),
        "address": "东门路20号", "description": "绿化带内少量垃圾", "attributes": {},
        "self_handle": {"result": "已当场清理", "photo_ids": [_photo(s, who["worker"], 99)]}})
    return made + 1


# --- resident services (便民服务) -------------------------------------------------------------

# (area code, category code, name, booking mode, fields)
DEMO_SERVICES = [
    ("330183001001", "clinic", "东门社区卫生服务站全科门诊", "slots", {
        "provider": "东门社区卫生服务站", "description": "全科诊疗、慢病随访、预约挂号",
        "address": "东门路30号", "phone": "0571-63300001", "fee": "挂号费5元",
        "materials": ["身份证", "医保卡"]}),
    ("330183001001", "elderly_meals", "东门长者食堂助餐", "slots", {
        "provider": "东门社区居家养老服务中心", "fee": "60岁以上老人每餐8元",
        "description": "为辖区老人提供午餐，行动不便者可送餐上门", "address": "东门路26号"}),
    ("330183001001", "housekeeping", "老年人上门维修", "request", {
        "provider": "东门社区志愿服务队", "fee": "免费（材料费自理）",
        "description": "水电维修、门锁更换，服务对象为独居、高龄老人", "address": "东门社区"}),
    ("330183001", "legal_aid", "富春街道公共法律服务工作站", "slots", {
        "provider": "富春街道司法所", "fee": "免费", "description": "法律咨询、法律援助申请",
        "address": "富春街道办事处一楼", "materials": ["身份证", "经济困难证明"]}),
    ("330183001", "guide", "居住证办理", "none", {
        "provider": "富春街道便民服务中心", "fee": "免费", "online": True, "max_trips": 1,
        "description": "新居民申领居住证：网上申报，窗口核验一次办结（最多跑一次）",
        "materials": ["身份证", "居住登记凭证", "近期一寸照片"],
        "steps": "网上申报 → 窗口核验 → 邮寄送达", "address": "富春街道便民服务中心2号窗口"}),
]


def seed_services(s: Session) -> int:
    """A few service points of 东门社区 and 富春街道, with weekday schedules for the bookable
    ones (slots generated for the coming days, holidays skipped)."""
    from datetime import time

    from geo.fields import GpsFix
    from grid.services import catalogue, schedules
    from grid.services.models import Service, ServiceCategory

    if s.scalar(sa.select(Service.id).limit(1)) is not None:
        return 0
    categories = dict(s.execute(sa.select(ServiceCategory.code, ServiceCategory.id)).all())
    rng = random.Random(SEED + 8)
    for area_code, category, name, mode, fields in DEMO_SERVICES:
        area_id, lon, lat = s.execute(sa.select(
            Area.id, sa.func.ST_X(sa.func.ST_PointOnSurface(Area.boundary)),
            sa.func.ST_Y(sa.func.ST_PointOnSurface(Area.boundary)))
            .where(Area.code == area_code)).one()
        made = catalogue.create_service(s, SYSTEM, {
            "category_id": categories[category], "area_id": area_id, "name": name,
            "booking_mode": mode, "closed_on_holidays": True,
            "location": GpsFix(lon=lon + rng.uniform(-5e-4, 5e-4),
                               lat=lat + rng.uniform(-5e-4, 5e-4)),
            "opening_hours": [{"days": [1, 2, 3, 4, 5], "open": "08:30", "close": "17:00"}],
            **fields})
        if mode == "slots":
            schedules.add_schedule(s, SYSTEM, made.id, {
                "weekdays": [1, 2, 3, 4, 5], "start_time": time(8, 30),
                "end_time": time(11, 30), "slot_minutes": 30, "capacity": 5,
                "working_days_only": True})
    return len(DEMO_SERVICES)
