"""The base of every HTTP model: camelCase on the wire, snake_case in Python."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from tenantry.auth import COMPANY_ID_REGEX


class ApiModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


_COMPANY_ID_RULE = "1-64 letters, digits, '_', '.', '-', starting with a letter or digit"
# A company id in a body, and in a query string (`?companyId=`, with the admin key).
CompanyId = Annotated[
    str, Field(min_length=1, max_length=64, pattern=COMPANY_ID_REGEX, description=_COMPANY_ID_RULE)
]
CompanyQuery = Annotated[
    str | None,
    Query(alias="companyId", min_length=1, max_length=64, pattern=COMPANY_ID_REGEX),
]
