"""What GeoReport v2 clients send: the POST form of a service request and the query of
GET requests. Unknown fields are ignored (311 clients send jurisdiction_id, account_id,
address_id… that have no meaning here); empty values count as absent (`status=`); a list
filter may be repeated (`status=open&status=closed` is `status=open,closed`), any other
input sent twice with different values is refused, naming it (never cut to one)."""

from __future__ import annotations

import re

import marshmallow as ma
from werkzeug.datastructures import MultiDict

from server.api import UtcDateTime
from server.errors import Invalid, field_errors

ATTRIBUTE_RE = re.compile(r"^attribute\[([^\[\]]{1,64})\](\[\])?$")
_id = ma.validate.Regexp(r"^[A-Za-z0-9._:\-]{1,47}$",
                         error="1–47 letters, digits, '.', '_', ':' or '-'.")


class _Lenient(ma.Schema):
    class Meta:
        unknown = ma.EXCLUDE


class PostRequestSchema(_Lenient):
    service_code = ma.fields.String(required=True, validate=ma.validate.Length(max=16))
    lat = ma.fields.Float(allow_nan=False, validate=ma.validate.Range(min=-90, max=90))
    long = ma.fields.Float(allow_nan=False, validate=ma.validate.Range(min=-180, max=180))
    address_string = ma.fields.String(validate=ma.validate.Length(max=200))
    # Our extension: the grid of an address-only request (15-digit grid code).
    grid_code = ma.fields.String(validate=ma.validate.Regexp(r"^\d{15}$"))
    description = ma.fields.String(validate=ma.validate.Length(max=4000))
    media_url = ma.fields.Url(schemes={"http", "https"}, validate=ma.validate.Length(max=1000))
    email = ma.fields.Email(validate=ma.validate.Length(max=254))
    first_name = ma.fields.String(validate=ma.validate.Length(max=32))
    last_name = ma.fields.String(validate=ma.validate.Length(max=32))
    phone = ma.fields.String(validate=ma.validate.Length(max=32))
    device_id = ma.fields.String(validate=ma.validate.Length(max=128))
    # Our extension: the client's own id of this request, for safe retries.
    client_request_id = ma.fields.String(validate=_id)

    @ma.validates_schema
    def _both_or_neither(self, data, **kwargs):
        if ("lat" in data) != ("long" in data):
            raise ma.ValidationError("Send lat and long together.", "lat")


class RequestQuerySchema(_Lenient):
    service_request_id = ma.fields.String(validate=ma.validate.Length(max=10_000))
    service_code = ma.fields.String(validate=ma.validate.Length(max=2000))
    start_date = UtcDateTime()
    end_date = UtcDateTime()
    status = ma.fields.String(validate=ma.validate.Regexp(
        r"^(open|closed)(,(open|closed))*$", error="open, closed or open,closed."))
    page = ma.fields.Integer(load_default=1, validate=ma.validate.Range(min=1, max=1_000_000))
    page_size = ma.fields.Integer(load_default=1000, validate=ma.validate.Range(min=1, max=1000))


# The filters of GET requests that the spec lets a client declare several times.
LIST_PARAMS = frozenset({"service_request_id", "service_code", "status"})
# The inputs we read (others, like jurisdiction_id, are ignored however often sent).
QUERY_FIELDS = frozenset(RequestQuerySchema().fields) | {"api_key"}
POST_FIELDS = frozenset(PostRequestSchema().fields) | {"api_key"}


def _present(params: MultiDict, key: str) -> list:
    return [v for v in params.getlist(key) if v not in ("", None)]


def _once(key: str, values: list, location: str) -> object:
    """The one value of a single-valued input: the same value repeated is harmless,
    different values are a 400 naming the input (which one was meant is unknowable)."""
    if len(set(map(str, values))) > 1:
        raise Invalid(field_errors(key, "Send it once (it was sent several times with "
                                        "different values).", location=location))
    return values[0]


def query_params(args: MultiDict) -> dict:
    """The query of GET requests as RequestQuerySchema loads it: without empty values,
    the repeats of a list filter joined with commas, other repeats refused."""
    query: dict = {}
    for key in args:
        values = _present(args, key)
        if not values:
            continue
        if key in LIST_PARAMS:
            query[key] = ",".join(values)
        elif key in QUERY_FIELDS:
            query[key] = _once(key, values, "query")
    return query


def split_params(params: MultiDict) -> tuple[dict, dict[str, list[str]]]:
    """(plain fields, {attribute code: [values]}) of a form, without empty values; a
    field of the spec sent twice with different values is refused.

    attribute[code]=v and attribute[code][]=v1&attribute[code][]=v2 (multivaluelist) both
    give a list of values; the service turns them into the attribute's type.
    """
    fields: dict = {}
    attributes: dict[str, list[str]] = {}
    for key in params:
        values = _present(params, key)
        if not values:
            continue
        match = ATTRIBUTE_RE.match(key)
        if match:
            attributes.setdefault(match.group(1), []).extend(values)
        elif key in POST_FIELDS:
            fields[key] = _once(key, values, "form")
    return fields, attributes


def json_params(body: dict) -> MultiDict:
    """A JSON body as the same form: {"attribute": {"code": value or [values]}, …}."""
    pairs: list[tuple[str, object]] = []
    for key, value in body.items():
        if key == "attribute" and isinstance(value, dict):
            for code, item in value.items():
                for one in item if isinstance(item, list) else [item]:
                    pairs.append((f"attribute[{code}][]", one))
        elif not isinstance(value, (dict, list)):
            pairs.append((key, value))
    return MultiDict(pairs)
