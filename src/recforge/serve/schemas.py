"""Request and response bodies (pydantic). Validation errors become 422 responses naming the field.

Every number is bounded and finite, so that nothing a client sends can overflow a SQLite integer, a numpy array or a
float: integer ids and history times are int64, feedback timestamps are unix seconds in [0, 253402300799]
(year 9999), feedback values are finite. Optional fields are omitted, never sent as ``null``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    model_validator,
)

from recforge.data.vocab import id_variants

#: JSON integers are exact in every client up to 2**53 - 1 (I-JSON, RFC 7493); larger integer ids are sent as
#: strings ("9007199254740993" matches the integer id by the id rule)
SAFE_INT = 2**53 - 1
#: latest feedback timestamp accepted: 9999-12-31T23:59:59Z in unix seconds
MAX_TIMESTAMP = 253_402_300_799


def _whole(value: Any) -> Any:
    """A JSON number without a fractional part is an integer (JSON Schema's rule): 630.0 -> 630."""
    if isinstance(value, float) and value.is_integer() and abs(value) <= SAFE_INT:
        return int(value)
    return value


#: External ids are JSON strings (1..256 characters, no NUL) or integers within +-(2**53 - 1) (never booleans, never
#: fractions); they are compared by the id rule of ``recforge.data.vocab`` ("7" and 7 are one id; "07" and "٧" are
#: other ids).
Id = (Annotated[StrictStr, Field(min_length=1, max_length=256, pattern=r"^[^\x00]+$")]
      | Annotated[StrictInt, Field(ge=-SAFE_INT, le=SAFE_INT), BeforeValidator(_whole)])
K = Annotated[StrictInt, Field(ge=1, le=1000, description="number of items to return (1..1000)"),
              BeforeValidator(_whole)]
Time = Annotated[StrictInt, Field(ge=0, le=SAFE_INT), BeforeValidator(_whole)]
Timestamp = Annotated[float, Field(strict=True, ge=0, le=MAX_TIMESTAMP, allow_inf_nan=False)]
Value = Annotated[float, Field(strict=True, ge=-1e12, le=1e12, allow_inf_nan=False)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorBody(BaseModel):
    """Every 4xx/5xx answer: ``detail`` is a message, or for 422 a list of {loc, msg, type} naming the fields."""

    detail: str | list[dict[str, Any]]


def _one_of_user_or_history(schema: dict[str, Any]) -> None:
    schema["oneOf"] = [
        {"required": ["user_id"], "not": {"anyOf": [{"required": ["history"]}, {"required": ["times"]}]}},
        {"required": ["history"], "not": {"required": ["user_id"]}},
    ]


class RecommendRequest(_Strict):
    """Either ``user_id`` (a known or unknown user) or ``history`` (an anonymous session, oldest item first).

    An empty history, or one whose items are all unknown, is answered like an unknown user (popularity fallback)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_one_of_user_or_history)

    user_id: Id = None
    history: list[Id] = Field(None, max_length=1000)
    times: list[Time] = Field(
        None, max_length=1000,
        description="timestamps of the history's items, in the training data's unit, one per history item (models "
                    "with a time signal, HSTU, use them; others ignore them)")
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


#: the statuses a client can cause, documented on every route that can answer them
def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for the given error statuses, each with the :class:`ErrorBody` schema."""
    text = {
        400: "invalid Host header (not in the allowed hosts)",
        401: "missing or wrong bearer token",
        403: "admin routes are disabled (no admin token configured)",
        404: "unknown id",
        409: "the request cannot be carried out in the current state (failed reload, a model that cannot do this)",
        413: "request body too large",
        415: "request body is not JSON",
        422: "malformed JSON, non-finite number, lone surrogate, or a field out of its schema",
        503: "the feedback store is unavailable (the event was not stored)",
    }
    return {code: {"model": ErrorBody, "description": text[code]} for code in codes}


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
    #: unix seconds of the event (0 .. year 9999); the server's clock when omitted
    timestamp: Timestamp = None
    #: optional finite number (a rating, a dwell time)
    value: Value = None


class FeedbackResponse(BaseModel):
    #: row id in the store; the event is committed (durable) when this response is sent
    id: int
    known_item: bool


class ReloadRequest(_Strict):
    #: run folder or artifact directory on the server; the current source when omitted
    path: Annotated[StrictStr, Field(min_length=1, max_length=4096, pattern=r"^[^\x00]+$")] = None


#: one text value of a new item: visible text without NUL, bounded
Text = Annotated[StrictStr, Field(min_length=1, max_length=200, pattern=r"^[^\x00]+$")]


class NewItem(_Strict):
    """One item added to the catalogue, described by the fields the model's sentence template renders (the
    MovieLens shape: ``title: Heat; genres: Action, Crime; year: 1995; tags: ...``). At least one of ``title``,
    ``genres`` and ``tags`` must hold non-blank text."""

    item_id: Id
    #: the title; a trailing "(1995)" is read as the year, as in the MovieLens files
    title: Annotated[StrictStr, Field(max_length=1000, pattern=r"^[^\x00]*$")] = None
    #: genre names (the catalogue's "genre" attribute group)
    genres: list[Text] = Field(None, max_length=50)
    #: free-text tags (the catalogue's item text, rendered as ``tags: a, b``)
    tags: list[Text] = Field(None, max_length=200)
    #: release year, appended to the title as "(year)" when the title has none
    year: Annotated[StrictInt, Field(ge=1000, le=9999), BeforeValidator(_whole)] = None

    @model_validator(mode="after")
    def _has_text(self) -> NewItem:
        words = [self.title or "", *(self.genres or ()), *(self.tags or ())]
        if not any(w.strip() for w in words):
            raise ValueError("an item needs text: a non-blank title, genres or tags")
        return self


class AddItemsRequest(_Strict):
    """New catalogue items (1..1000 per request; item ids distinct by the id rule: ``7`` and ``"7"`` are one id)."""

    items: list[NewItem] = Field(min_length=1, max_length=1000)

    @model_validator(mode="after")
    def _distinct(self) -> AddItemsRequest:
        seen: set[Any] = set()
        for item in self.items:
            key = id_variants(item.item_id)[-1] if isinstance(item.item_id, str) else item.item_id
            if key in seen:
                raise ValueError(f"item_id {item.item_id!r} appears more than once")
            seen.add(key)
        return self


class AddItemsResponse(BaseModel):
    #: the added ids, as the server now holds them (a canonical decimal string becomes its integer)
    added: list[StrictStr | StrictInt]
    n_items: int
    model_version: str


class ModelInfo(BaseModel):
    """The served model (no filesystem path: the version names the artifact)."""

    model: str
    #: the artifact's version, plus ``+items<N>`` when catalogue additions (up to the store's row N) are applied
    version: str
    n_users: int
    n_items: int
    supports_histories: bool
    index: dict | None
    loaded_at: float
    #: items added to the catalogue over ``/admin/items`` that this model serves
    added_items: int
    #: whether ``/admin/items`` can add items to this model
    can_add_items: bool
    #: the language model an LLM recommender calls while serving (backend name), or None
    llm: dict | None
