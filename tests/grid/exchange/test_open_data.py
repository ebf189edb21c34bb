"""Open data (数据开放): public, cacheable datasets of de-identified aggregates.

Anyone (no login) reads the DCAT-style catalogue and each dataset as CSV and JSON with its
data dictionary, licence and update time; answers carry an ETag (304 when unchanged) and
Cache-Control: public. Counts under 5 are suppressed, a rate needs 5 cases behind it, and
nothing about a person or a case's reporter leaves (the personal-data scan reads every
answer; names, ID numbers, phones, case codes and descriptions are absent).
"""

from __future__ import annotations

import csv
import io

import sqlalchemy as sa

from grid.cases.models import Case
from grid.exchange import open_data
from server import clock
from tests import pii_scan
from tests.fixtures.areas import C11, G111, G121
from tests.fixtures.cases import report
from tests.fixtures.ledgers import id_number

DATASETS = ("cases-by-street-category-month", "service-bookings-by-category-month",
            "population-by-community-age-band")


def rows_of(client, name: str) -> list[dict]:
    response = client.get(f"/open-data/datasets/{name}.json")
    assert response.status_code == 200, response.get_json()
    return response.get_json()["rows"]


def test_the_catalogue_lists_every_dataset_with_dictionary_and_licence(client):
    response = client.get("/open-data/catalog.json")
    assert response.status_code == 200
    catalog = response.get_json()
    assert catalog["@type"] == "dcat:Catalog" and catalog["license"]
    assert [d["identifier"] for d in catalog["dataset"]] == list(DATASETS)
    for d in catalog["dataset"]:
        assert d["dictionary"] and d["license"] and d["title"]
        assert {x["mediaType"] for x in d["distribution"]} == {"text/csv", "application/json"}


def test_small_cells_are_suppressed(client, people, category, db_session):
    codes = [report(people.worker, category, G111, description=f"垃圾{i}")["id"]
             for i in range(6)]
    for i in range(2):
        report(people.worker, category, G121, description=f"别处{i}")
    # five of the six closed, four of them in time
    db_session.execute(sa.update(Case).where(Case.id.in_(codes[:5])).values(
        closed_at=clock.now(), closed_in_time=True))
    db_session.execute(sa.update(Case).where(Case.id == codes[0]).values(closed_in_time=False))
    db_session.commit()
    rows = rows_of(client, DATASETS[0])
    assert len(rows) == 1  # both grids are in street S1: one row, 8 cases
    [row] = rows
    assert (row["reported"], row["closed"], row["on_time_rate"]) == (8, 5, 0.8)
    db_session.execute(sa.update(Case).where(Case.id == codes[4]).values(closed_at=None))
    db_session.commit()
    open_data.refresh(db_session)
    [row] = rows_of(client, DATASETS[0])
    assert (row["reported"], row["closed"], row["on_time_rate"]) == (8, None, None)
    text = client.get(f"/open-data/datasets/{DATASETS[0]}.csv").get_data(as_text=True)
    [parsed] = list(csv.DictReader(io.StringIO(text)))
    assert (parsed["reported"], parsed["closed"], parsed["on_time_rate"]) == ("8", "", "")


def test_population_by_age_band_leaves_nothing_personal(client, api, db_session):
    worker = api("grid_worker", G111)
    names = [f"张{i}明" for i in range(8)]
    for i, name in enumerate(names):
        birth = "19900101" if i < 6 else "19500101"
        worker.person(name=name, id_number=id_number(100 + i, birth),
                      phone=f"1381234{5670 + i}")
    rows = rows_of(client, DATASETS[2])
    by_band = {r["age_band"]: r["persons"] for r in rows if r["community_code"] == C11}
    assert by_band == {"35-59": 6, "60-79": None}
    for fmt in ("csv", "json"):
        response = client.get(f"/open-data/datasets/{DATASETS[2]}.{fmt}")
        text = response.get_data(as_text=True)
        assert pii_scan.body_findings(response.mimetype, response.get_data()) == []
        assert not any(name in text for name in names)
        assert "13812345" not in text and "19900101" not in text


def test_answers_are_cacheable(client, people, category):
    report(people.worker, category)
    first = client.get(f"/open-data/datasets/{DATASETS[0]}.json")
    assert first.headers["Cache-Control"].startswith("public, max-age=")
    etag = first.headers["ETag"]
    again = client.get(f"/open-data/datasets/{DATASETS[0]}.json",
                       headers={"If-None-Match": etag})
    assert again.status_code == 304
    as_csv = client.get(f"/open-data/datasets/{DATASETS[0]}.csv")
    assert as_csv.mimetype == "text/csv" and as_csv.headers["ETag"] == etag
    body = first.get_json()
    assert body["modified"] and body["license"]["name"] and body["dictionary"]
    assert client.get("/open-data/datasets/nothing.json").status_code == 404
