"""The OpenAPI document: the contract in machine form, built from the error catalogue.

It is written here rather than generated from the routes because the contact-card routes
read requests directly (see `cards.py`); tests prove that the document and the running
server agree, answer by answer.
"""

from __future__ import annotations

from typing import Any

from contactcard import errors
from contactcard.card import WIRE_PROPERTIES
from contactcard.contract import MAX_BODY_BYTES, NAME_MAX
from contactcard.webhooks.events import DOC_URL, EVENT_TYPES

CARD_PATHS = ("/v3/contact_card", "/api/partner/v3/contact_card")
WEBHOOK_PREFIXES = ("/v3", "/api/partner/v3")

# The codes each operation can answer with, by HTTP status.
_COMMON = {401: [2004], 413: [1413], 500: [3006], 503: [4006, 4007]}
OPERATION_ERRORS: dict[str, dict[int, list[int]]] = {
    "get": {400: [1002, 1005], 403: [2005], **_COMMON},
    "post": {
        400: [1001, 1002, 1003, 1005, 5006, 5007],
        403: [2005],
        409: [2014],
        429: [1007],
        **_COMMON,
        500: [2022, 3006],
        503: [4004, 4005, 4006, 4007, 4008],
    },
    "patch": {
        400: [1001, 1002, 1003, 1005, 5006, 5007],
        403: [2005],
        404: [2001],
        429: [1007],
        **_COMMON,
        500: [2022, 3006],
        503: [4004, 4005, 4006, 4007, 4008],
    },
    "list_subscriptions": {**_COMMON},
    "create_subscription": {400: [1001, 1002, 1003, 1005], 403: [2005], **_COMMON},
    "get_subscription": {404: [2001], **_COMMON},
    "update_subscription": {400: [1002, 1003, 1005], 403: [2005], 404: [2001], **_COMMON},
    "delete_subscription": {404: [2001], **_COMMON},
    "list_event_types": {**_COMMON},
}

_PHONE = WIRE_PROPERTIES["phone_number"]
_NAME = {
    "type": "string",
    "minLength": 1,
    "description": f"1-{NAME_MAX} characters after trimming white space; no control or bidirectional characters.",
}
_IMAGE_URL = {"type": "string", "maxLength": 2048, "description": "Absolute https URL of the image to rehost."}

_SCHEMAS: dict[str, Any] = {
    # Built from the one conversion's own description (card.py), never written twice.
    "ContactCard": {
        "type": "object",
        "required": list(WIRE_PROPERTIES),
        "properties": WIRE_PROPERTIES,
        "additionalProperties": False,
    },
    "ContactCardList": {
        "type": "object",
        "required": ["contact_cards"],
        "properties": {"contact_cards": {"type": "array", "items": {"$ref": "#/components/schemas/ContactCard"}}},
        "additionalProperties": False,
    },
    "SetupContactCard": {
        "type": "object",
        "required": ["phone_number", "first_name"],
        "properties": {
            "phone_number": _PHONE,
            "first_name": _NAME,
            "last_name": {**_NAME, "type": ["string", "null"], "minLength": 0},
            "image_url": {**_IMAGE_URL, "type": ["string", "null"]},
        },
    },
    "UpdateContactCard": {
        "type": "object",
        "description": "Present fields replace stored ones; omitted fields keep them; null clears "
        "last_name or image_url. An empty object re-applies the stored values.",
        "properties": {
            "first_name": _NAME,
            "last_name": {**_NAME, "type": ["string", "null"], "minLength": 0},
            "image_url": {**_IMAGE_URL, "type": ["string", "null"]},
        },
    },
    "WebhookSubscription": {
        "type": "object",
        "required": [
            "id",
            "target_url",
            "subscribed_events",
            "phone_numbers",
            "is_active",
            "created_at",
            "updated_at",
        ],
        "properties": {
            "id": {"type": "string"},
            "target_url": {"type": "string"},
            "subscribed_events": {"type": "array", "items": {"$ref": "#/components/schemas/WebhookEventType"}},
            "phone_numbers": {"type": ["array", "null"], "items": _PHONE},
            "is_active": {"type": "boolean"},
            "created_at": {"type": "string", "format": "date-time"},
            "updated_at": {"type": "string", "format": "date-time"},
            "signing_secret": {
                "type": "string",
                "description": "`whsec_` + base64 of the HMAC key; only in the answer to create.",
            },
        },
        "additionalProperties": False,
    },
    "WebhookSubscriptionList": {
        "type": "object",
        "required": ["subscriptions"],
        "properties": {
            "subscriptions": {"type": "array", "items": {"$ref": "#/components/schemas/WebhookSubscription"}}
        },
        "additionalProperties": False,
    },
    "WebhookEventType": {"type": "string", "enum": list(EVENT_TYPES)},
    "WebhookEventList": {
        "type": "object",
        "required": ["events", "doc_url"],
        "properties": {
            "events": {"type": "array", "items": {"$ref": "#/components/schemas/WebhookEventType"}},
            "doc_url": {"const": DOC_URL},
        },
        "additionalProperties": False,
    },
    "CreateWebhookSubscription": {
        "type": "object",
        "required": ["target_url", "subscribed_events"],
        "properties": {
            "target_url": {
                "type": "string",
                "maxLength": 2048,
                "description": "Absolute https URL (public hosts only, as image URLs); one subscription per "
                "URL per partner. A host name that does not resolve yet is accepted, and each delivery "
                "attempt retried until it does. `?version=YYYY-MM-DD` selects the bodies' `webhook_version`.",
            },
            "subscribed_events": {
                "type": "array",
                "minItems": 1,
                "items": {"$ref": "#/components/schemas/WebhookEventType"},
            },
            "phone_numbers": {
                "type": ["array", "null"],
                "items": _PHONE,
                "maxItems": 1000,
                "description": "Lines of the partner to receive events of; null or empty: every line.",
            },
        },
    },
    "UpdateWebhookSubscription": {
        "type": "object",
        "description": "Present fields replace stored ones; the signing secret never changes.",
        "properties": {
            "target_url": {"type": "string", "maxLength": 2048},
            "subscribed_events": {
                "type": "array",
                "minItems": 1,
                "items": {"$ref": "#/components/schemas/WebhookEventType"},
            },
            "phone_numbers": {"type": ["array", "null"], "items": _PHONE, "maxItems": 1000},
            "is_active": {"type": "boolean"},
        },
    },
    "Error": {
        "type": "object",
        "required": ["success", "error", "trace_id"],
        "properties": {
            "success": {"const": False},
            "error": {
                "type": "object",
                "required": ["status", "code", "message", "doc_url"],
                "properties": {
                    "status": {"type": "integer"},
                    "code": {"type": "integer", "enum": [e.code for e in errors.CATALOGUE]},
                    "message": {"type": "string"},
                    "doc_url": {"type": "string"},
                    "retry_after": {"type": "integer", "minimum": 1, "description": "Only on 429."},
                },
                "additionalProperties": False,
            },
            "trace_id": {"type": "string"},
        },
        "additionalProperties": False,
    },
}

_TRACE = {"x-trace-id": {"description": "The request's trace id.", "schema": {"type": "string"}}}
_NO_RETRY = {"x-should-retry": {"description": "Always `false`: SDKs must not retry.", "schema": {"const": "false"}}}


def _error_response(status: int, codes: list[int]) -> dict[str, Any]:
    lines = [f"`{c}` {errors.BY_CODE[c].message}" for c in codes]
    schema = {
        "allOf": [
            {"$ref": "#/components/schemas/Error"},
            {"properties": {"error": {"properties": {"status": {"const": status}, "code": {"enum": codes}}}}},
        ]
    }
    if status == 429:
        schema["allOf"].append({"properties": {"error": {"required": ["retry_after"]}}})
    headers = dict(_TRACE)
    if status in (409, 429):
        headers.update(_NO_RETRY)
    if status == 429:
        headers["retry-after"] = {"description": "Seconds to wait.", "schema": {"type": "string"}}
    return {
        "description": "; ".join(lines),
        "headers": headers,
        "content": {"application/json": {"schema": schema}},
    }


def _responses(method: str, success_schema: str | None, success: str = "200") -> dict[str, Any]:
    ok: dict[str, Any] = {"description": "OK" if success_schema else "Done, no body", "headers": _TRACE}
    if success_schema:
        ok["content"] = {"application/json": {"schema": {"$ref": f"#/components/schemas/{success_schema}"}}}
    responses: dict[str, Any] = {success: ok}
    for status, codes in sorted(OPERATION_ERRORS[method].items()):
        responses[str(status)] = _error_response(status, codes)
    return responses


_PHONE_QUERY_OPTIONAL = {
    "name": "phone_number",
    "in": "query",
    "required": False,
    "description": "E.164 number to filter by. Omitted: every card of the partner. A leading space "
    "(an unencoded `+` typed by hand) is read as `+`; anything else not E.164 is 400 1002.",
    "schema": {"type": "string", "examples": ["+15551234567"]},
}


def _operations() -> dict[str, Any]:
    return {
        "get": {
            "operationId": "getContactCards",
            "summary": "Get contact cards",
            "parameters": [_PHONE_QUERY_OPTIONAL],
            "responses": _responses("get", "ContactCardList"),
        },
        "post": {
            "operationId": "setupContactCard",
            "summary": "Set up a contact card (first time only)",
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/SetupContactCard"}}},
            },
            "responses": _responses("post", "ContactCard"),
        },
        "patch": {
            "operationId": "updateContactCard",
            "summary": "Update a contact card",
            "parameters": [{**_PHONE_QUERY_OPTIONAL, "required": True, "description": "E.164 number of the card."}],
            "requestBody": {
                "required": False,
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/UpdateContactCard"}}},
            },
            "responses": _responses("patch", "ContactCard"),
        },
    }


def _body(schema: str) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}}}


_SUBSCRIPTION_ID = {"name": "subscription_id", "in": "path", "required": True, "schema": {"type": "string"}}


def _webhook_paths(prefix: str, suffix: str) -> dict[str, Any]:
    return {
        f"{prefix}/webhook-subscriptions": {
            "get": {
                "operationId": "listWebhookSubscriptions" + suffix,
                "summary": "List webhook subscriptions, active and inactive",
                "responses": _responses("list_subscriptions", "WebhookSubscriptionList"),
            },
            "post": {
                "operationId": "createWebhookSubscription" + suffix,
                "summary": "Create a webhook subscription (the answer holds the signing secret, once)",
                "requestBody": _body("CreateWebhookSubscription"),
                "responses": _responses("create_subscription", "WebhookSubscription", "201"),
            },
        },
        f"{prefix}/webhook-subscriptions/{{subscription_id}}": {
            "get": {
                "operationId": "getWebhookSubscription" + suffix,
                "summary": "Get a webhook subscription",
                "parameters": [_SUBSCRIPTION_ID],
                "responses": _responses("get_subscription", "WebhookSubscription"),
            },
            "put": {
                "operationId": "updateWebhookSubscription" + suffix,
                "summary": "Update a webhook subscription",
                "parameters": [_SUBSCRIPTION_ID],
                "requestBody": {**_body("UpdateWebhookSubscription"), "required": False},
                "responses": _responses("update_subscription", "WebhookSubscription"),
            },
            "delete": {
                "operationId": "deleteWebhookSubscription" + suffix,
                "summary": "Delete a webhook subscription",
                "parameters": [_SUBSCRIPTION_ID],
                "responses": _responses("delete_subscription", None, "204"),
            },
        },
        f"{prefix}/webhook-events": {
            "get": {
                "operationId": "listWebhookEventTypes" + suffix,
                "summary": "The event types a subscription may name",
                "responses": _responses("list_event_types", "WebhookEventList"),
            }
        },
    }


# The reference's sections, by resource (Swagger UI otherwise puts everything under
# "default"); the SDKs' alias paths in one section of their own, so each route reads once.
TAGS = {
    "Contact cards": "A line's contact card: get, set up once, update.",
    "Webhook subscriptions": "Where a partner's events are delivered, and which.",
    "Images": "The rehosted card photos.",
    "Under /api/partner/v3": "The same routes under the SDKs' default base URL.",
}


def _tag(paths: dict[str, Any]) -> None:
    for path, operations in paths.items():
        if path.startswith("/api/partner/"):
            tag = "Under /api/partner/v3"
        elif path.startswith("/cdn/"):
            tag = "Images"
        elif "contact_card" in path:
            tag = "Contact cards"
        else:
            tag = "Webhook subscriptions"
        for operation in operations.values():
            operation["tags"] = [tag]


def document(server_url: str) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for index, path in enumerate(CARD_PATHS):
        operations = _operations()
        if index:  # the alias under the SDKs' default base URL
            for operation in operations.values():
                operation["operationId"] += "Partner"
        paths[path] = operations
    for index, prefix in enumerate(WEBHOOK_PREFIXES):
        paths.update(_webhook_paths(prefix, "Partner" if index else ""))
    paths["/cdn/contact-card/{name}"] = {
        "get": {
            "operationId": "getCdnImage",
            "summary": "A rehosted contact-card image",
            "security": [],
            "parameters": [{"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}],
            "responses": {
                "200": {
                    "description": "The image, cached forever (the name is its sha256).",
                    "headers": {**_TRACE, "etag": {"schema": {"type": "string"}}},
                    "content": {"image/jpeg": {"schema": {"type": "string", "format": "binary"}}},
                },
                "304": {"description": "Not modified (If-None-Match matched)."},
                "404": _error_response(404, [2001]),
            },
        }
    }
    _tag(paths)
    return {
        "openapi": "3.1.0",
        "tags": [{"name": name, "description": about} for name, about in TAGS.items()],
        "info": {
            "title": "contactcard",
            "version": "3",
            "description": "The Linq API v3 contact card endpoints, self-hosted. Request bodies are "
            f"limited to {MAX_BODY_BYTES // 1024} KiB.",
        },
        "servers": [{"url": server_url}],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "schemas": _SCHEMAS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
