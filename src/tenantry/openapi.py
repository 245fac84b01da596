"""The OpenAPI document tells the truth about errors.

FastAPI documents validation errors with its own `HTTPValidationError` shape,
but Tenantry answers every error as `{"error": {...}}`. This rewrites the 422
responses to that shape and documents it as each operation's `default` response,
so clients (and schemathesis) can rely on the schema for every status.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel


class ErrorDetail(BaseModel):
    code: str
    message: str
    details: Any = None


class ErrorResponse(BaseModel):
    error: ErrorDetail


_ERROR_REF = {"$ref": "#/components/schemas/ErrorResponse"}
_ERROR_RESPONSE = {
    "description": "An error: the code, a message naming the field and rule, and details.",
    "content": {"application/json": {"schema": _ERROR_REF}},
}


def install_openapi(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            _document_errors(schema)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _document_errors(schema: dict[str, Any]) -> None:
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    error_schema = ErrorResponse.model_json_schema(ref_template="#/components/schemas/{model}")
    components.update(error_schema.pop("$defs", {}))
    components["ErrorResponse"] = error_schema
    components.pop("HTTPValidationError", None)
    components.pop("ValidationError", None)
    for path_item in schema.get("paths", {}).values():
        for operation in path_item.values():
            responses = operation.setdefault("responses", {})
            for status, response in list(responses.items()):
                if status.startswith(("4", "5")) and "content" not in response:
                    response["content"] = _ERROR_RESPONSE["content"]
            if "422" in responses:
                responses["422"] = {**_ERROR_RESPONSE, "description": "Validation error"}
            responses.setdefault("default", _ERROR_RESPONSE)
