"""`EvaluationContext`: who and where a flag is evaluated for (Unleash's context, plus company).

The standard fields are Unleash's (`userId`, `sessionId`, `remoteAddress`,
`environment`, `appName`, `currentTime`); any other name a constraint or a
stickiness asks for is looked up in `properties`, as Unleash does. `companyId` is
Tenantry's own field; to Unleash it is the property of that name, so a document
moved between the two decides the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

COMPANY_ID = "companyId"
_FIELDS = {
    "userId": "user_id",
    "sessionId": "session_id",
    "remoteAddress": "remote_address",
    "environment": "environment",
    "appName": "app_name",
    "currentTime": "current_time",
    COMPANY_ID: "company_id",
}
_ATTRIBUTES = tuple(_FIELDS.values())


@dataclass(frozen=True, slots=True)
class EvaluationContext:
    user_id: str | None = None
    company_id: str | None = None
    session_id: str | None = None
    remote_address: str | None = None
    environment: str | None = None
    app_name: str | None = None
    current_time: str | None = None  # RFC 3339; None is "now"
    properties: Mapping[str, str] = field(default_factory=dict)

    FIELD_NAMES: ClassVar[frozenset[str]] = frozenset(_FIELDS)

    def value(self, name: str) -> str | None:
        """The context's value for a constraint's or a stickiness's `contextName`."""
        attribute = _FIELDS.get(name)
        if attribute is not None:
            found: str | None = getattr(self, attribute)
            if found is not None or name != COMPANY_ID:
                return found
        return self.properties.get(name)

    def with_value(self, name: str, value: str | None) -> EvaluationContext:
        """A copy with `name` set (a standard field, or else a property)."""
        attribute = _FIELDS.get(name)
        if attribute is not None:
            # Built directly: dataclasses.replace costs three times as much, and a flag's
            # `check` makes one of these per call.
            values = {field: getattr(self, field) for field in _ATTRIBUTES}
            values[attribute] = value
            return EvaluationContext(**values, properties=self.properties)
        properties = {k: v for k, v in self.properties.items() if k != name}
        if value is not None:
            properties[name] = value
        return replace(self, properties=properties)

    def merged(self, other: EvaluationContext) -> EvaluationContext:
        """`other`'s values where it has them, this context's elsewhere."""
        changes = {
            attribute: getattr(other, attribute)
            for attribute in _FIELDS.values()
            if getattr(other, attribute) is not None
        }
        return replace(self, **changes, properties={**self.properties, **other.properties})

    @classmethod
    def of(cls, data: Mapping[str, Any]) -> EvaluationContext:
        """From an Unleash-shaped context (camelCase); values are taken as strings."""
        values: dict[str, Any] = {}
        for name, attribute in _FIELDS.items():
            raw = data.get(name)
            if raw is not None:
                values[attribute] = _text(raw)
        properties = data.get("properties") or {}
        values["properties"] = {
            str(key): _text(value) for key, value in properties.items() if value is not None
        }
        return cls(**values)

    def to_unleash(self) -> dict[str, Any]:
        """The context as an Unleash SDK takes it (`companyId` as a property)."""
        data: dict[str, Any] = {
            name: getattr(self, attribute)
            for name, attribute in _FIELDS.items()
            if name != COMPANY_ID and getattr(self, attribute) is not None
        }
        properties = dict(self.properties)
        if self.company_id is not None:
            properties[COMPANY_ID] = self.company_id
        if properties:
            data["properties"] = properties
        return data


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


EMPTY_CONTEXT = EvaluationContext()
