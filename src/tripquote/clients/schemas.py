"""Client request body."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, EmailStr, Field, StringConstraints

from tripquote.quotes.schemas import Text200

Name = Text200
"""1-200 characters after trimming, no control characters, not only invisible ones."""
Phone = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, min_length=3, max_length=64, pattern=r"^[0-9+() .\-]+$"
    ),
]


class ClientIn(BaseModel):
    """``POST /api/agents/clients`` body; unknown fields are rejected."""

    model_config = ConfigDict(extra="forbid")

    name: Name = Field(description="The client's full name.", examples=["Aiko Tanaka"])
    email: EmailStr | None = Field(default=None, examples=["aiko@example.com"])
    phone: Phone | None = Field(default=None, examples=["+81 3 1234 5678"])
