"""The served OpenAPI document and the running server agree, answer by answer."""

from __future__ import annotations

import httpx
import pytest
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012
from starlette.routing import Route

from contactcard import errors
from contactcard.http import openapi
from tests.conftest import make_partner
from tests.support import images


@pytest.fixture
def document(server) -> dict:
    response = httpx.get(f"{server.base_url}/openapi.json")
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    return response.json()


def _pointer(*parts: str) -> str:
    return "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)


def check(document: dict, response: httpx.Response, path: str) -> None:
    """The response is documented for its operation: status, headers and body schema."""
    method = response.request.method.lower()
    operation = document["paths"][path][method]
    status = str(response.status_code)
    assert status in operation["responses"], f"{method.upper()} {path} answered undocumented {status}"
    documented = operation["responses"][status]
    for header in documented.get("headers", {}):
        assert header in response.headers, f"{status} lacks documented header {header}"
    content = documented.get("content")
    if not content:
        return
    media = response.headers["content-type"].split(";")[0]
    assert media in content
    if media != "application/json":
        return
    registry = Registry().with_resource("urn:doc", Resource.from_contents(document, DRAFT202012))
    ref = "urn:doc#/" + _pointer("paths", path, method, "responses", status, "content", media, "schema")
    Draft202012Validator({"$ref": ref}, registry=registry).validate(response.json())


def test_document_routes_match_the_app(server, document):
    served: dict[str, set[str]] = {}
    for route in server.framework.router.routes:
        if isinstance(route, Route) and (
            route.path in openapi.CARD_PATHS or route.path.startswith("/cdn/") or "/webhook-" in route.path
        ):
            served[route.path] = {m.lower() for m in route.methods or ()} - {"head"}
    documented = {path: set(ops) for path, ops in document["paths"].items()}
    assert served == documented


def test_every_documented_code_is_in_the_catalogue(document):
    for operation_errors in openapi.OPERATION_ERRORS.values():
        for status, codes in operation_errors.items():
            for code in codes:
                assert errors.BY_CODE[code].status == status


def test_real_answers_match_the_document(farm, backend, image_host, document):
    server = farm.get(backend, write_budget=2)
    partner, other = make_partner(server), make_partner(server)
    phone, spare, third = partner.lines
    hosted = farm.get(backend, profile="hosted")
    hosted_partner = make_partner(hosted, lines=1)
    picture = image_host.serve(images.jpeg())
    not_image = image_host.serve(b"hello", content_type="image/png")
    path, alias = openapi.CARD_PATHS
    auth = {"authorization": f"Bearer {partner.key}"}
    seen: set[tuple[str, int]] = set()
    with httpx.Client(base_url=server.base_url, headers=auth, timeout=20) as http:
        calls = [
            lambda: http.get(path),
            lambda: http.get(alias, params={"phone_number": phone}),
            lambda: http.get(path, params={"phone_number": "123"}),
            lambda: http.get(path, params=[("phone_number", phone), ("phone_number", phone)]),
            lambda: http.get(path, params={"phone_number": other.lines[0]}),
            lambda: http.get(path, headers={"authorization": "Bearer nope"}),
            lambda: http.patch(path, params={"phone_number": phone}, json={"first_name": "A"}),
            lambda: http.post(path, json={"phone_number": phone, "first_name": "A", "image_url": picture}),
            lambda: http.post(path, json={"phone_number": phone, "first_name": "A"}),
            lambda: http.post(path, json={"phone_number": spare, "first_name": "A", "image_url": not_image}),
            lambda: http.post(path, json={"phone_number": spare, "first_name": "A", "image_url": picture + "x"}),
            lambda: http.post(path, content=b"{", headers={"content-type": "application/json"}),
            lambda: http.post(path, json={"first_name": "A"}),
            lambda: http.post(path, json={"phone_number": "+1", "first_name": "A"}),
            lambda: http.post(path, json={"phone_number": phone, "first_name": 1}),
            lambda: http.post(path, json={"phone_number": other.lines[0], "first_name": "A"}),
            lambda: http.post(path, content=b"x" * 70_000, headers={"content-type": "application/json"}),
            lambda: http.patch(path, params={"phone_number": phone}, json={"last_name": "B"}),
            lambda: http.patch(path, params={"phone_number": phone}, json={"last_name": "C"}),
            lambda: http.patch(path, json={}),
        ]
        for call in calls:
            response = call()
            check(document, response, response.request.url.path)
            seen.add((response.request.method, response.status_code))
        partner.script(third, rate_limit_next=1)
        limited = http.post(alias, json={"phone_number": third, "first_name": "A"})
        check(document, limited, alias)
        partner.script(spare, rcs_unavailable=True)
        http.post(path, json={"phone_number": spare, "first_name": "A"})
        unavailable = http.patch(path, params={"phone_number": spare}, json={})
        check(document, unavailable, path)
        seen |= {("POST", limited.status_code), ("PATCH", unavailable.status_code)}
        image = http.get(http.get(path, params={"phone_number": phone}).json()["contact_cards"][0]["image_url"])
        check(document, image, image.request.url.path.rsplit("/", 1)[0] + "/{name}")
        missing = http.get(f"/cdn/contact-card/{'a' * 64}.jpg")
        check(document, missing, "/cdn/contact-card/{name}")
    hosted_partner.script(hosted_partner.lines[0], fail_next=1)
    failed = httpx.post(
        f"{hosted.base_url}{path}",
        json={"phone_number": hosted_partner.lines[0], "first_name": "A"},
        headers={"authorization": f"Bearer {hosted_partner.key}"},
    )
    check(document, failed, path)
    seen.add(("POST", failed.status_code))
    # The battery reached every kind of answer the document promises for the card routes.
    assert {s for _, s in seen} >= {200, 400, 401, 403, 404, 409, 413, 429, 500, 503}
