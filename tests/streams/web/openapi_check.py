"""Validate JSON bodies against the schemas of ``streams/web/openapi.json``."""

from __future__ import annotations

import json
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker

from streams.web.views import OPENAPI_PATH

SPEC: dict[str, Any] = json.loads(OPENAPI_PATH.read_text(encoding="utf-8"))


def response_schema(path: str, status: int, content_type: str = "application/json") -> dict[str, Any]:
    op = SPEC["paths"][path]["get"]
    return op["responses"][str(status)]["content"][content_type]["schema"]  # type: ignore[no-any-return]


def validate(path: str, status: int, body: Any) -> None:
    """Raise ``jsonschema.ValidationError`` unless ``body`` fits the documented response."""
    schema = {**response_schema(path, status), "components": SPEC["components"]}
    Draft202012Validator(schema, format_checker=FormatChecker()).validate(body)
