"""What every job type is made of: a payload model, a producer, a handler.

A job type's module (email.py, export.py, ...) holds all three:

- its payload, a `JobPayload` (camelCase in the job's data, as Node producers write it);
- `request(...)`, the producer: a validated `JobRequest` that `JobService.submit` enqueues,
  so a bad payload is a 422 naming the field before anything is enqueued;
- its handler, a callable object holding the services it needs (built by the wiring),
  which validates the data again with the same model: a job added by another producer
  (Node, the generic HTTP route) with bad data fails at once, without retries.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.alias_generators import to_camel

from tenantry.errors import InvalidInput
from tenantry.jobs.backends import PermanentJobError


class JobPayload(BaseModel):
    """A job's data. `companyId` is added (and checked) by `JobService.add`, not here."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True)

    @classmethod
    def build(cls, **fields: Any) -> Self:
        """For producers: the payload, or `InvalidInput` (422) naming the first bad field."""
        try:
            return cls(**fields)
        except ValidationError as exc:
            error = exc.errors()[0]
            field = cls._wire_name(error["loc"])
            raise InvalidInput(
                _describe(field, error["msg"]),
                details={"field": field, "rule": error["type"]},
            ) from None

    @classmethod
    def of_job(cls, data: dict[str, Any]) -> Self:
        """For handlers: the job's data as this payload, or a `PermanentJobError`."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            messages = [_describe(cls._wire_name(e["loc"]), e["msg"]) for e in exc.errors()]
            raise PermanentJobError("; ".join(messages)) from None

    def to_data(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)

    @classmethod
    def _wire_name(cls, location: tuple[int | str, ...]) -> str:
        """An error's location as the job's data spells it (`reportType`, not `report_type`)."""
        if not location:
            return "data"
        first = cls.model_fields.get(str(location[0]))
        head = first.alias if first is not None and first.alias else str(location[0])
        return ".".join([head, *(str(part) for part in location[1:])])


@dataclass(frozen=True, slots=True)
class JobRequest:
    """A job ready to enqueue: which queue, under which name, with what data."""

    queue: str
    name: str
    payload: JobPayload


def _describe(field: str, message: str) -> str:
    message = message.removeprefix("Value error, ")
    return message if message.startswith(field) else f"{field}: {message}"
