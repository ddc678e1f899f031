"""Request and response bodies (pydantic). Validation errors become 422 responses naming the field."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    model_validator,
)

#: External ids are JSON strings or integers (never floats or booleans).
Id = Annotated[StrictStr, Field(min_length=1, max_length=256)] | StrictInt
K = Annotated[StrictInt, Field(ge=1, le=1000, description="number of items to return (1..1000)")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RecommendRequest(_Strict):
    """Either ``user_id`` (a known or unknown user) or ``history`` (an anonymous session, oldest item first)."""

    user_id: Id | None = None
    history: list[Id] | None = Field(None, max_length=1000)
    times: list[StrictInt] | None = Field(
        None, max_length=1000,
        description="timestamps of the history's items, in the training data's unit (models with a time signal, "
                    "HSTU, use them; others ignore them)")
    k: K = 10
    exclude: list[Id] = Field(default_factory=list, max_length=10_000, description="item ids never to return")
    exclude_seen: StrictBool = True

    @model_validator(mode="after")
    def _one_of(self) -> RecommendRequest:
        if (self.user_id is None) == (self.history is None):
            raise ValueError("give exactly one of user_id or history")
        if self.times is not None and (self.history is None or len(self.times) != len(self.history)):
            raise ValueError("times needs a history, one timestamp per history item")
        return self


class ScoredItem(BaseModel):
    item: StrictStr | StrictInt
    score: float


class RecommendResponse(BaseModel):
    user_id: StrictStr | StrictInt | None
    items: list[ScoredItem]
    #: "model" (known user), "history" (anonymous session or user + live feedback), "popular" (unknown-user fallback)
    source: Literal["model", "history", "popular"]
    fallback: bool
    #: history/exclude item ids that the model does not know (ignored)
    ignored: list[StrictStr | StrictInt]
    model_version: str


class SimilarRequest(_Strict):
    item_id: Id
    k: K = 10


class SimilarResponse(BaseModel):
    item_id: StrictStr | StrictInt
    items: list[ScoredItem]
    #: "embedding" (cosine of item vectors) or "cooccurrence" (cosine of item columns of the training matrix)
    method: Literal["embedding", "cooccurrence"]
    model_version: str


class FeedbackRequest(_Strict):
    user_id: Id
    item_id: Id
    event: Annotated[StrictStr, Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")] = "click"
    #: unix seconds of the event; the server's clock when omitted
    timestamp: StrictFloat | StrictInt | None = None
    value: StrictFloat | StrictInt | None = None


class FeedbackResponse(BaseModel):
    #: row id in the store; the event is committed (durable) when this response is sent
    id: int
    known_item: bool


class ReloadRequest(_Strict):
    #: run folder or artifact directory; the current source when omitted
    path: StrictStr | None = None


class ModelInfo(BaseModel):
    model: str
    version: str
    source: str
    n_users: int
    n_items: int
    supports_histories: bool
    index: dict | None
    loaded_at: float
