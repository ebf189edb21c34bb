"""The four kinds of ledger (台账) an import writes: 实有人口 (persons, who join or found the
household of their 户号 and may head it), 户 (households), 楼栋 (buildings) and 实有单位
(organisations, whose points outside their grid are flagged for review): what makes a row a
duplicate, the register's records that already have its key, and how a batch is written.
"""

from __future__ import annotations

from datetime import date

from grid.ledgers import columns as c
from grid.ledgers.batches import Pending, Writer, pg_array

_GPS = ("location", "gps_crs", "gps_raw_lon", "gps_raw_lat")


class _Persons(Writer):
    key_field = "id_number"
    key_label = "ID number"
    NAMES = ("name", "id_number_enc", "id_number_bidx", "id_number_masked", "sex", "birth_date",
             "phone_enc", "phone_bidx", "phone_masked", "ethnicity", "relation_to_head",
             "population_type", "registration_situation")
    REGISTER_SQL = ("SELECT id_number_bidx, id, area_id, id >= %(first_id)s AND source = 'import'"
                    " FROM persons WHERE id_number_bidx = ANY(%(keys)s::text[])")

    first_id: int | None = None  # the first id this import gave a person

    def register_message(self, row: Pending, record_id: int, area_id: int) -> str:
        return self.existing_message("This ID number is already registered", "person",
                                     record_id, area_id)

    def seen_before(self, first: dict[str, int]) -> dict[str, int]:
        return {}  # the unique index knows: see `registered`

    def registered(self, first: dict[str, int], batch: list[Pending],
                   in_file: dict[str, int]) -> dict[str, tuple[int, int]]:
        """The register's people with the batch's ID numbers. Earlier rows of this file are
        among them (they are written): those are reported as the rows they came from
        (ledger_import_ids), the others as the API's 409."""
        self.cur.execute(self.REGISTER_SQL, {"keys": pg_array(first), "first_id": self.first_id})
        found, ours = {}, {}
        for key, record_id, area_id, imported_now in self.cur.fetchall():
            if key in first:
                (ours if imported_now else found)[key] = (record_id, area_id)
        if ours:
            self.cur.execute("SELECT id, row FROM ledger_import_ids WHERE id = ANY(%s::bigint[])",
                             (pg_array(i for i, _ in ours.values()),))
            rows = dict(self.cur.fetchall())
            in_file.update({key: rows[i] for key, (i, _) in ours.items()})
        return found

    def flush(self, batch: list[Pending]) -> None:
        batch = self.duplicates(batch)
        if not batch:
            return
        batch, households, ids = self._households(batch)
        if not batch:
            return
        person_id = {id(r): i for r, i in zip(batch, ids, strict=False)}
        new_households = [h for h in households.values() if h["new"]]
        self.copy("households", (*self.RECORD_COLUMNS, "household_no", "type", "head_person_id"),
                  ([h["id"], h["area_id"], "import", self.actor.user_id, self.actor.user_id,
                    False, 1, h["no"], h["type"],
                    person_id[id(h["head_row"])] if "head_row" in h else None]
                   for h in new_households))
        household_of = {id(r): households[(r.area_id, r.values["household_no"])]["id"]
                        for r in batch if "household_no" in r.values}
        self.copy_records("persons", batch, ids, ("household_id", "status"),
                          (f",{household_of.get(id(r), '')},present" for r in batch))
        if self.first_id is None:
            self.first_id = ids[0]
        self.copy("ledger_import_ids", ("id", "row"),
                  ((i, r.number) for r, i in zip(batch, ids, strict=False)), count=False)
        self.copy("household_stays", ("person_id", "household_id", "relation_to_head"),
                  ([person_id[id(r)], household_of[id(r)], r.fields["relation_to_head"]]
                   for r in batch if id(r) in household_of))
        self.copy("person_tags", ("person_id", "kind", "tag", "start_date", "created_by"),
                  ([person_id[id(r)], kind, tag, self.today, self.actor.user_id]
                   for r in batch
                   for kind, tags in (("care", r.values.get("care_tags") or ()),
                                      ("key", r.values.get("key_tags") or ()))
                   for tag in tags))
        heads = [(h["id"], person_id[id(h["head_row"])]) for h in households.values()
                 if not h["new"] and "head_row" in h]
        if heads:
            self.cur.execute(
                "UPDATE households h SET head_person_id = v.person_id, version = h.version + 1, "
                "updated_at = now(), updated_by = %s FROM unnest(%s::bigint[], %s::bigint[]) "
                "AS v(id, person_id) WHERE h.id = v.id",
                (self.actor.user_id, pg_array(h for h, _ in heads), pg_array(p for _, p in heads)))
            self.report.wrote("households_headed", len(heads))
        self.accept(batch)

    def _households(self, batch: list[Pending]) -> tuple[list[Pending], dict, list[int]]:
        """The household of each row with a 户号 (existing in its grid, or new: its id
        reserved), its head (one 户主 per household), and ids reserved for the persons:
        one statement."""
        wanted = {(r.area_id, r.values["household_no"]) for r in batch
                  if "household_no" in r.values}
        households: dict[tuple[int, str], dict] = {}
        several: set[tuple[int, str]] = set()
        if wanted:
            self.cur.execute(
                "SELECT area_id, household_no, id, head_person_id IS NOT NULL FROM households"
                " WHERE area_id = ANY(%s::bigint[]) AND household_no = ANY(%s::text[])"
                " AND ended_at IS NULL",
                (pg_array({a for a, _ in wanted}), pg_array({n for _, n in wanted})))
            for area_id, no, hid, has_head in self.cur.fetchall():
                if (area_id, no) not in wanted:
                    continue
                if (area_id, no) in households:
                    several.add((area_id, no))
                households[(area_id, no)] = {"id": hid, "new": False, "has_head": has_head}
        missing = [k for k in wanted if k not in households]
        self.cur.execute(
            "SELECT (SELECT array_agg(nextval(%s::regclass)) FROM generate_series(1, %s)),"
            "       (SELECT array_agg(nextval(%s::regclass)) FROM generate_series(1, %s))",
            (self.sequence("persons"), len(batch), self.sequence("households"), len(missing)))
        ids, new_ids = self.cur.fetchone()
        for (area_id, no), hid in zip(missing, new_ids or (), strict=True):
            households[(area_id, no)] = {"id": hid, "new": True, "has_head": False,
                                         "area_id": area_id, "no": no, "type": None}
        kept = []
        for row in batch:
            key = (row.area_id, row.values.get("household_no"))
            household = households.get(key)
            if household is None:
                kept.append(row)
                continue
            if key in several:
                self.reject(row, "household_no", f"户号 {key[1]} is several households in "
                                                 "this grid: record the person through the API.")
                continue
            if row.fields["relation_to_head"] == "head":
                if household["has_head"]:
                    self.reject(row, "relation_to_head",
                                f"Household {key[1]} already has a head (户主).")
                    continue
                household["has_head"], household["head_row"] = True, row
            if household["new"] and household["type"] is None:
                household["type"] = row.values.get("household_type", "registered")
            kept.append(row)
        # A new household nobody of the batch kept (every member refused) is not written.
        used = {(r.area_id, r.values["household_no"]) for r in kept if "household_no" in r.values}
        return kept, {k: h for k, h in households.items() if k in used}, ids


class _Households(Writer):
    key_field = "household_no"
    NAMES = ("household_no", "type")
    key_label = "户号 in the grid"
    REGISTER_SQL = ("SELECT area_id || ':' || household_no, id, area_id "
                    "FROM households WHERE ended_at IS NULL AND area_id = ANY(%(areas)s::bigint[]) "
                    "AND household_no = ANY(%(nos)s::text[])")

    def register_params(self, batch: list[Pending]) -> dict:
        return {"areas": pg_array({r.area_id for r in batch}),
                "nos": pg_array({r.fields["household_no"] for r in batch})}

    def register_message(self, row: Pending, record_id: int, area_id: int) -> str:
        return self.existing_message(
            f"户号 {row.fields['household_no']} is already registered in this grid",
            "household", record_id, area_id)

    def flush(self, batch: list[Pending]) -> None:
        batch = self.duplicates(batch)
        if batch:
            self.copy_records("households", batch, self.reserve("households", len(batch)))
            self.accept(batch)


class _Buildings(Writer):
    key_field = "name"
    key_label = "building name and address in the grid"
    NAMES = ("name", "address", "use", "floors", "units", "is_crowded_rental", "is_unsafe",
             "is_live_work_store", "leader_name", "leader_phone_enc", "leader_phone_masked",
             *_GPS)
    REGISTER_SQL = ("SELECT area_id || ':' || name || chr(31) || coalesce(address, ''), "
                    "id, area_id FROM buildings "
                    "WHERE ended_at IS NULL AND area_id = ANY(%(areas)s::bigint[]) "
                    "AND name = ANY(%(names)s::text[])")

    def register_params(self, batch: list[Pending]) -> dict:
        return {"areas": pg_array({r.area_id for r in batch}),
                "names": pg_array({r.fields["name"] for r in batch})}

    def register_message(self, row: Pending, record_id: int, area_id: int) -> str:
        return self.existing_message(
            "This building (name and address) is already registered in this grid",
            "building", record_id, area_id)

    def flush(self, batch: list[Pending]) -> None:
        batch = self.duplicates(batch)
        if batch:
            ids = self.reserve("buildings", len(batch))
            self.copy_records("buildings", batch, ids)
            self.accept(batch)
            _review_points(self, "buildings", ids)


class _Organisations(Writer):
    key_field = "uscc"
    key_label = "USCC"

    def key_of(self, row: Pending) -> tuple[str | None, str]:
        return ("uscc", "USCC") if row.fields["uscc"] else ("name", "name in the grid")
    NAMES = ("uscc", "name", "kind", "industry", "legal_representative", "employees",
             "address", "phone", "risk_flags", *_GPS)
    REGISTER_SQL = ("SELECT 'u:' || uscc, id, area_id FROM organisations "
                    "WHERE uscc = ANY(%(usccs)s::text[]) UNION ALL "
                    "SELECT 'n:' || area_id || ':' || name, id, area_id "
                    "FROM organisations WHERE ended_at IS NULL "
                    "AND area_id = ANY(%(areas)s::bigint[]) AND name = ANY(%(names)s::text[])")

    def register_params(self, batch: list[Pending]) -> dict:
        return {"usccs": pg_array(r.fields["uscc"] for r in batch if r.fields["uscc"]),
                "areas": pg_array({r.area_id for r in batch}),
                "names": pg_array({r.fields["name"] for r in batch if not r.fields["uscc"]})}

    def register_message(self, row: Pending, record_id: int, area_id: int) -> str:
        message = ("This USCC is already registered" if row.fields["uscc"] else
                   "An organisation of this name is already registered in this grid")
        return self.existing_message(message, "organisation", record_id, area_id)

    def flush(self, batch: list[Pending]) -> None:
        batch = self.duplicates(batch)
        if batch:
            ids = self.reserve("organisations", len(batch))
            self.copy_records("organisations", batch, ids)
            self.accept(batch)
            _review_points(self, "organisations", ids)


def _review_points(writer: Writer, table: str, ids: list[int]) -> None:
    """A ledger's point outside the row's grid is kept and flagged for review (as the API
    does for a point of a record whose grid its parent decides)."""
    writer.cur.execute(
        f"UPDATE {table} r SET needs_review = true, review_reasons = ARRAY["
        "  coalesce('gps_in_other_grid_' || (SELECT g.code FROM areas g "
        "    JOIN area_levels l ON l.key = g.level WHERE ST_Covers(g.boundary, r.location) "
        "    AND l.rank >= (SELECT rank FROM area_levels WHERE key = 'grid') "
        "    ORDER BY l.rank DESC, g.id LIMIT 1), 'gps_outside_grids')] "
        f"FROM areas a WHERE r.id = ANY(%s) AND a.id = r.area_id AND r.location IS NOT NULL "
        "AND NOT ST_Covers(a.boundary, r.location)", (ids,))
    if writer.cur.rowcount:
        writer.report.wrote(f"{table}_needing_review", writer.cur.rowcount)


WRITERS: dict[str, type[Writer]] = {"persons": _Persons, "households": _Households,
                                      "buildings": _Buildings, "organisations": _Organisations}


def row_key(kind: str, area_id: int, fields: dict) -> str | None:
    if kind == "persons":
        return fields["id_number_bidx"]
    if kind == "households":
        return f"{area_id}:{fields['household_no']}"
    if kind == "buildings":
        return f"{area_id}:{fields['name']}\x1f{fields['address'] or ''}"
    return f"u:{fields['uscc']}" if fields["uscc"] else f"n:{area_id}:{fields['name']}"


def row_fields(kind: str, row: c.Row, key_tags: bool, today: date) -> dict:
    if kind == "persons":
        return c.person_fields(row, key_tags, today)
    if kind == "households":
        return c.household_fields(row)
    if kind == "buildings":
        return c.building_fields(row)
    return c.organisation_fields(row)

