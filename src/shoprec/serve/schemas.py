"""Request and response bodies of the /v1 API (pydantic 2).

Requests are strict: unknown fields, wrong types (no "5" for 5), ids that are too long or hold
control characters, and numbers out of range are 422 errors that say which field and why.
Shopper ids travel in request bodies only, never in URLs, so that access logs cannot hold them.

Long file: the whole public contract of the API in one place, in the order of the OpenAPI
document (events, catalogue, recommendations, tokens, shoppers' data, model, keys, health,
stats), so that a change to what clients send or receive is reviewed in one file.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    WithJsonSchema,
    model_validator,
)

from shoprec.data.schema import EVENT_TYPES

MAX_ID = 64
MAX_SHOPPER_ID = 256
MAX_BATCH_SCHEMA = 10_000  # the configured batch limit (ServeSettings.max_batch) is checked too
MAX_K_SCHEMA = 1000
MAX_TIMESTAMP = 32_503_680_000  # year 3000
MS_FROM = 1e11  # from here a timestamp number is milliseconds (1973-03-03 onwards); below it, seconds
MAX_TIMESTAMP_MS = MAX_TIMESTAMP * 1000
MAX_PRICE = 1e9

# Printable ids without spaces: what shops use for SKUs and event ids.
ID_PATTERN = r"^[A-Za-z0-9._:@+\-]+$"
ItemId = Annotated[str, StringConstraints(min_length=1, max_length=MAX_ID, pattern=ID_PATTERN)]
EventId = Annotated[str, StringConstraints(min_length=1, max_length=MAX_ID, pattern=r"^[A-Za-z0-9._:\-]+$")]
ShopperId = Annotated[
    str, StringConstraints(min_length=1, max_length=MAX_SHOPPER_ID, pattern=r"^[^\x00-\x1f\x7f]+$")
]
ImpressionId = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{32}$")]
Title = Annotated[str, StringConstraints(max_length=300, pattern=r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*$")]
Category = Annotated[str, StringConstraints(max_length=100, pattern=r"^[^\x00-\x1f\x7f]*$")]
EventType = Literal["view", "cart", "favourite", "purchase", "rating"]
Role = Literal["ingest", "read", "history", "admin"]
Price = Annotated[float, Field(ge=0, le=MAX_PRICE, allow_inf_nan=False)]
Weight = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]

assert set(EventType.__args__) == set(EVENT_TYPES)  # type: ignore[attr-defined]


class Strict(BaseModel):
    """Base of request bodies: unknown fields and type coercion are errors."""

    model_config = ConfigDict(extra="forbid", strict=True)


def to_epoch_seconds(value: object) -> int:
    """Whole seconds since the Unix epoch from seconds (a number below MS_FROM), milliseconds
    (from MS_FROM up) or an RFC 3339 date-time with a UTC offset; ValueError saying which forms
    are accepted for anything else."""
    if isinstance(value, str):
        try:
            parsed = _DATETIME.validate_python(value)
        except ValidationError:
            raise ValueError("a timestamp string must be an RFC 3339 date-time with a UTC offset, such as "
                             "2026-12-02T10:15:00Z") from None
        return math.floor(parsed.timestamp())
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError("a timestamp must be a number (seconds or milliseconds) or an RFC 3339 string")  # noqa: TRY004 - pydantic turns ValueError, not TypeError, into a 422
    if not math.isfinite(value) or not 0 <= value <= MAX_TIMESTAMP_MS:
        raise ValueError(f"a timestamp number must lie in [0, {MAX_TIMESTAMP_MS}] (below 1e11 seconds since "
                         "1970, from 1e11 milliseconds, up to the year 3000)")
    return math.floor(value / 1000.0 if value >= MS_FROM else value)


def _whole(value: object) -> object:
    return int(value) if isinstance(value, float) and value.is_integer() else value


WHOLE = BeforeValidator(_whole)
"""On an int field: JSON may also spell the integer 21.0 (JSON Schema counts that as an
integer); strings and fractions stay errors."""

_DATETIME = TypeAdapter(AwareDatetime)
Timestamp = Annotated[int, BeforeValidator(to_epoch_seconds), WithJsonSchema({"anyOf": [
    {"type": "integer", "minimum": 0, "maximum": MAX_TIMESTAMP_MS},
    {"type": "number", "minimum": 0, "maximum": MAX_TIMESTAMP_MS},
    {"type": "string", "format": "date-time"},
]})]
"""An event time in any of the accepted forms, as whole seconds since the epoch."""


# ---- events -----------------------------------------------------------------------------------
class MyEventIn(Strict):
    """One behaviour event of the shopper a token is bound to (`POST /v1/me/events`). `event_id`
    is the client's unique id for it (a UUID, say): sending the same event again, as a retry
    does, stores it once."""

    event_id: EventId
    item_id: ItemId
    event: EventType
    timestamp: Timestamp | None = Field(
        default=None,
        description="when it happened: a number below 1e11 is seconds since the Unix epoch (UTC), from 1e11 up "
                    "it is milliseconds (1973 onwards, up to the year 3000); or an RFC 3339 date-time with a "
                    "UTC offset (2026-12-02T10:15:00Z); default: when received",
    )
    value: Annotated[float, Field(ge=-1e9, le=1e9, allow_inf_nan=False)] | None = Field(
        default=None, description="the rating of a rating event, the quantity of a purchase"
    )
    impression_id: ImpressionId | None = Field(
        default=None, description="the recommendation response this event acts on (click-through)"
    )


class EventIn(MyEventIn):
    """One behaviour event of a shopper. `event_id` is the client's unique id for it (a UUID,
    say): sending the same event again, as a retry does, stores it once."""

    shopper_id: ShopperId


class EventBatch(Strict):
    events: Annotated[list[EventIn], Field(min_length=1, max_length=MAX_BATCH_SCHEMA)]


class MyEventBatch(Strict):
    events: Annotated[list[MyEventIn], Field(min_length=1, max_length=MAX_BATCH_SCHEMA)]


class IngestResult(BaseModel):
    accepted: int = Field(description="events stored by this request")
    duplicates: int = Field(description="events skipped because this source stored their event_id, with the "
                                        "same payload, before")
    unknown_items: int = Field(default=0, description="distinct item ids of these events that the catalogue "
                                                      "does not hold (stored all the same)")
    unknown_item_ids: list[str] = Field(default=[], description="the first 20 of them")
    not_stored: int = Field(default=0, description="events not stored because their shopper chose no "
                                                   "personalisation (privacy choice none)")


# ---- catalogue --------------------------------------------------------------------------------
class ItemFields(Strict):
    title: Title = ""
    category: Category = ""
    price: Price | None = None
    active: bool = True


class ItemIn(ItemFields):
    item_id: ItemId


class ItemPatch(Strict):
    """Fields to change; fields left out keep their value."""

    title: Title | None = None
    category: Category | None = None
    price: Price | None = None
    active: bool | None = None


class ItemBatch(Strict):
    items: Annotated[list[ItemIn], Field(min_length=1, max_length=MAX_BATCH_SCHEMA)]


class ItemOut(BaseModel):
    item_id: str
    title: str
    category: str
    price: float | None
    active: bool
    created_at: int
    updated_at: int


class ItemPage(BaseModel):
    items: list[ItemOut]
    total: int


class UpsertResult(BaseModel):
    created: int
    updated: int


# ---- recommendations --------------------------------------------------------------------------
class SessionEvent(Strict):
    item_id: ItemId
    event: EventType = "view"


class Filters(Strict):
    categories: Annotated[list[Category], Field(max_length=50)] | None = None
    min_price: Price | None = None
    max_price: Price | None = None

    @model_validator(mode="after")
    def _range(self) -> Filters:
        if self.min_price is not None and self.max_price is not None and self.min_price > self.max_price:
            raise ValueError(f"min_price ({self.min_price}) must not exceed max_price ({self.max_price})")
        return self


class SlateOptions(Strict):
    """A slate for the shopper a token is bound to (`POST /v1/me/recommendations`)."""

    k: Annotated[int, Field(ge=1, le=MAX_K_SCHEMA), WHOLE] = 10
    filters: Filters | None = None
    exploration: Weight | None = Field(default=None, description="exploration weight override, 0 = exploit only")
    diversity: Weight | None = Field(default=None, description="diversity override, 0 = by score only")


class RecommendationRequest(SlateOptions):
    """For a known shopper (`shopper_id`: the stored history is used) or an anonymous session
    (`session`: the history travels with the request, nothing is stored). Give exactly one."""

    # The schema says "exactly one" too (oneOf), so a client generated from it cannot send neither or both.
    model_config = ConfigDict(json_schema_extra={"oneOf": [{"required": ["shopper_id"]}, {"required": ["session"]}]})

    shopper_id: ShopperId = None  # type: ignore[assignment] - absent, never null (the schema has no null)
    session: Annotated[list[SessionEvent], Field(max_length=200)] = None  # type: ignore[assignment]

    @model_validator(mode="after")
    def _one_subject(self) -> RecommendationRequest:
        if (self.shopper_id is None) == (self.session is None):
            raise ValueError("give exactly one of shopper_id (a known shopper) or session (anonymous)")
        return self


class ExplanationOut(BaseModel):
    code: Literal["history", "new_in_category", "exploring", "popular", "similar"]
    text: str
    anchor_item_id: str | None = None
    basis: Literal["model", "similarity"] | None = Field(
        default=None, description="for a history explanation: model (removing the cited event lowers the "
                                  "item's score the most) or similarity (the most similar history item)")


class RecommendedItem(BaseModel):
    rank: int
    item_id: str
    title: str
    category: str
    price: float | None
    score: float
    explored: bool = Field(description="shown to explore rather than because it scored best")
    propensity: float = Field(description="probability that the policy shows this item here")
    explanation: ExplanationOut


class ExplorationOut(BaseModel):
    weight: float = Field(description="how much this slate explores, in [0, 1]")
    rule: str = Field(description="the weight rule: dynamic (per shopper and request) or fixed")
    overridden: bool = Field(description="true when the request or the settings fixed the weight")
    signals: dict[str, float] = Field(
        description="what the dynamic rule read: history (1 new shopper .. 0 long history), variance "
                    "(posterior / prior), drift (0 stable .. 1 reversed), payoff (log ratio of exploratory "
                    "to exploit reward), logit")


class RecentItem(BaseModel):
    item_id: str
    title: str
    event: str


class ExperimentAssignment(BaseModel):
    id: str
    variant: str


class RecommendationResponse(BaseModel):
    impression_id: str = Field(description="send it back with events on these items (click-through)")
    model: str
    model_version: str
    policy: str
    items: list[RecommendedItem]
    exploration: ExplorationOut
    path: Literal["model", "embedding", "popularity"] = Field(
        description="how the scores were computed: the model, the cheaper embedding path (latency "
                    "budget exceeded), or popularity (no known history)")
    degraded: bool = Field(description="true when the latency budget sent this request to the cheaper path")
    recent: list[RecentItem] = Field(default=[], description="the latest events the slate was computed from, newest "
                                                            "first (what the explanations cite)")
    experiment: ExperimentAssignment | None = Field(default=None, description="the A/B experiment running and "
                                                                              "this shopper's variant in it")


class SimilarResponse(BaseModel):
    item_id: str
    model_version: str
    items: list[RecommendedItem]


# ---- tokens -----------------------------------------------------------------------------------
class _TokenOptions(Strict):
    roles: Annotated[list[Literal["read", "ingest"]], Field(min_length=1, max_length=2)] = Field(
        default=["read", "ingest"], description="what the token may do; the issuing key must hold each role "
                                                "(a dashboard token reads only)")
    ttl_s: Annotated[int, Field(ge=60, le=7 * 24 * 3600), WHOLE] = Field(
        default=900, description="lifetime in seconds (at most the service's token_ttl_s)")


class ShopperTokenRequest(_TokenOptions):
    """A token bound to one shopper."""

    shopper_id: ShopperId


class SessionTokenRequest(_TokenOptions):
    """A token for a new anonymous session: the service makes up a shopper id and binds the token to it."""

    session: Literal[True]


class DashboardTokenRequest(_TokenOptions):
    """A token for the dashboard's aggregate figures (stats, model status, online learning runs)."""

    dashboard: Literal[True]


TokenRequest = ShopperTokenRequest | SessionTokenRequest | DashboardTokenRequest
"""One of the three: the body names exactly one of shopper_id, session: true, dashboard: true."""


class UiSessionRequest(Strict):
    """The demo page's request for a token: a sample shopper by number, a new guest, or the dashboard."""

    sample: Annotated[int, Field(ge=0, le=1000)] | None = None
    guest: bool = False
    dashboard: bool = False

    @model_validator(mode="after")
    def _one(self) -> UiSessionRequest:
        if (self.sample is not None) + self.guest + self.dashboard != 1:
            raise ValueError("give exactly one of sample, guest: true or dashboard: true")
        return self


class TokenOut(BaseModel):
    token: str = Field(description="send it as `Authorization: Bearer <token>`")
    kind: Literal["shopper", "dashboard"]
    roles: list[str]
    expires_at: int = Field(description="Unix seconds")
    session_id: str | None = Field(default=None, description="the shopper id made up for a session token")


# ---- shoppers' data ---------------------------------------------------------------------------
class ShopperRef(Strict):
    shopper_id: ShopperId


class ExportedEvent(BaseModel):
    event_id: str
    item_id: str
    event: str
    ts: int
    value: float | None
    impression_id: str | None
    received_at: int


class ExportedImpression(BaseModel):
    impression_id: str
    position: int
    item_id: str
    score: float
    propensity: float
    explored: bool
    reason: str
    policy: str
    model: str
    created_at: int


class ExportedState(BaseModel):
    space: str = Field(description="the item-feature space the posterior lives in")
    dim: int
    n_feedback: int
    updated_at: int
    state: list[float] = Field(description="the packed posterior (covariance, mean, counters, interests, payoff)")


PrivacyChoiceName = Literal["personalised", "private", "none"]
PRIVACY_CHOICE_TEXT = (
    "personalised: recommendations learn from the shopper's events; private: their events serve their own "
    "recommendations but train only differentially private models; none: their events are not stored "
    "(those stored so far are deleted) and nothing is logged about them")


class ShopperExport(BaseModel):
    pseudonyms: list[str] = Field(description="how the shopper is stored (one per pseudonym key)")
    privacy_choice: PrivacyChoiceName = "personalised"
    events: list[ExportedEvent]
    impressions: list[ExportedImpression]
    exploration_states: list[ExportedState] = []


class EraseResult(BaseModel):
    events_deleted: int
    impressions_deleted: int
    model_files_changed: int = Field(default=0, description="model files the shopper's per-shopper state was "
                                                            "removed from (the served one included)")


class PrivacyChoiceIn(Strict):
    """The privacy choice of the shopper a token is bound to."""

    choice: PrivacyChoiceName = Field(description=PRIVACY_CHOICE_TEXT)


class ShopperPrivacyIn(PrivacyChoiceIn):
    """A shopper's privacy choice, as the shop's backend records it."""

    shopper_id: ShopperId


class PrivacyChoiceOut(BaseModel):
    choice: PrivacyChoiceName
    events_deleted: int = Field(default=0, description="stored events deleted because the choice is none")


# ---- model, keys, health, stats ---------------------------------------------------------------
class ReloadRequest(Strict):
    path: Annotated[str, StringConstraints(min_length=1, max_length=255, pattern=r"^[A-Za-z0-9._\-/]+$")] | None = Field(
        default=None, description="a model file inside the model directory; default: the configured model"
    )


class ModelStatus(BaseModel):
    loaded: bool
    name: str | None = None
    version: str | None = None
    path: str | None = None
    loaded_at: float | None = None
    load_seconds: float | None = None
    params: dict[str, object] = {}
    n_items: int | None = None
    n_users: int | None = None
    similar_index: str | None = None
    policy: str
    catalogue_items: int
    offline_metrics: dict[str, float] = {}
    privacy: dict[str, object] = {}
    trained_at: str | None = None
    exploration: dict[str, object] = Field(default={}, description="weight rule, explorer, budget, feature space")
    choice: dict[str, str] = Field(default={}, description="the model served and why it was chosen")
    summary: str = Field(default="", description="the served model in a sentence a shop owner reads")
    n_events: int | None = None
    online_learning: dict[str, object] = Field(default={}, description="schedule, running job, last run")
    data_window: dict[str, int | None] = Field(default={}, description="first and last event it was trained on")
    latency_budget_ms: float | None = None


class RetrainQueued(BaseModel):
    queued: bool
    running: str | None = Field(description="the job running now, if any (retrain or grow)")


class RetrainRun(BaseModel):
    id: int
    started_at: int
    finished_at: int | None
    status: Literal["running", "swapped", "kept", "failed"]
    trigger: str
    n_events: int
    metric_before: float | None = Field(description="served model's NDCG@10 on the newest events")
    metric_after: float | None = Field(description="candidate's NDCG@10 on the same events")
    model_version: str | None
    message: str


class KeyRequest(Strict):
    name: Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._\-]+$")]
    roles: Annotated[list[Role], Field(min_length=1, max_length=3)]


class KeyOut(BaseModel):
    name: str
    key_id: str
    roles: list[str]
    created_at: int


class NewKey(KeyOut):
    key: str = Field(description="the secret key; shown once, store it now")


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    database: bool
    model_loaded: bool
    schema_revision: str | None
    version: str


class StatsPoint(BaseModel):
    t: int
    impressions: int
    slates: int
    explored: int
    clicks: int
    events: int


class Stats(BaseModel):
    since: int
    bucket_seconds: int
    series: list[StatsPoint]
    click_through: float | None = Field(description="clicks per impression over the window")
    exploration_share: float | None
    catalogue_items: int
    catalogue_coverage: float | None = Field(description="share of the catalogue recommended in the window")
    weight_histogram: list[int] = Field(default=[], description="slates per exploration weight, 10 bins over [0, 1]")
    served_paths: dict[str, int] = Field(default={}, description="slates by scoring path since the service started")
    retrains: list[RetrainRun] = Field(default=[], description="the latest online learning runs")
    model: ModelStatus


class ErrorBody(BaseModel):
    code: str
    message: str
    details: list[dict[str, object]] | None = None


class ErrorResponse(BaseModel):
    error: ErrorBody


# ---- A/B experiments ------------------------------------------------------------------------
ExperimentId = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._\-]+$")]


VariantName = Annotated[str, StringConstraints(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9._\-]+$")]


class VariantIn(Strict):
    """One arm: its weight in the split (shares are weights over their sum) and how it explores."""

    weight: Annotated[float, Field(gt=0.0, le=1e6, allow_inf_nan=False)] = Field(
        default=1.0, description="relative size of the arm: shares are weights divided by their sum")
    exploration: Weight | None = Field(default=None, description="a fixed exploration weight for this arm (0 is "
                                                                 "greedy); none: the service's weight rule")


class ExperimentIn(Strict):
    """A new experiment; it starts at once. Variants by name, the first one is the control."""

    id: ExperimentId
    # pydantic writes the key pattern as patternProperties only; the schema must also say that no
    # other key is allowed, or a client (or a fuzzer) reads any key as valid.
    variants: Annotated[dict[VariantName, VariantIn], Field(
        min_length=2, max_length=8,
        json_schema_extra={"additionalProperties": False,
                           "propertyNames": {"minLength": 1, "maxLength": 32, "pattern": r"^[A-Za-z0-9._\-]+$"}})]

    def variant_list(self) -> list[dict]:
        """[{name, share, exploration}] in the order given."""
        total = sum(v.weight for v in self.variants.values())
        return [{"name": name, "share": v.weight / total, "exploration": v.exploration}
                for name, v in self.variants.items()]


class Interval(BaseModel):
    value: float | None
    se: float | None
    low: float | None
    high: float | None


class VariantReport(BaseModel):
    name: str
    share: float
    exploration: float | None
    shoppers: int
    slates: int
    click_through: Interval = Field(description="slates with a click / slates, 95% interval by the delta method "
                                                "over shoppers")
    purchases_per_slate: Interval


class Comparison(BaseModel):
    variant: str
    metric: str
    difference: float | None
    low: float | None
    high: float | None
    relative: float | None
    p_value: float | None


class ExperimentReport(BaseModel):
    id: str
    started_at: int
    stopped_at: int | None
    control: str
    variants: list[VariantReport]
    comparisons: list[Comparison] = Field(description="each variant against the control: difference, 95% interval, "
                                                      "two-sided p-value (z-test)")
    sample_ratio: dict[str, float | bool | None] = Field(description="chi-square of shoppers per variant against the "
                                                                     "shares; mismatch when p < 0.001")
