"""``parcours generate``: realistic, deterministic omnichannel traffic as JSONL touchpoints.

Customers browse anonymously, log in, fill carts on the web and in the app, buy online or in a
store, get stuck with the chatbot and call, answer e-mail and SMS campaigns. The same seed gives
the same file.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from parcours.schemas.sdk import hash_email, hash_phone

START = datetime(2026, 11, 2, 6, 0, tzinfo=UTC)
TIMEZONES = ("Europe/Paris", "Europe/London", "Europe/Berlin", "America/New_York", "Europe/Madrid")
CATALOGUE = (
    ("SKU-JACKET", 129.0),
    ("SKU-SNEAKER", 89.9),
    ("SKU-TEE", 19.9),
    ("SKU-JEANS", 59.0),
    ("SKU-SCARF", 24.5),
    ("SKU-BOOTS", 149.0),
    ("SKU-CAP", 14.9),
    ("SKU-BAG", 79.0),
)
TOPICS = ("delivery", "returns", "payment", "sizing", "account")


@dataclass
class Customer:
    number: int
    crm_id: str
    email_sha256: str
    phone_sha256: str
    loyalty_id: str
    anonymous_id: str
    device_id: str
    timezone: str
    consent: str | None = None
    """The messaging channel this customer opts into, the first time they identify themselves."""

    def ids(self, *kinds: str) -> dict[str, str]:
        return {kind: getattr(self, kind) for kind in kinds}


@dataclass
class Step:
    after_seconds: float
    channel: str
    action: str
    identities: dict[str, str]
    extra: dict[str, Any] = field(default_factory=dict)


Scenario = Callable[[random.Random, Customer, str], list[Step]]


def _cart(rng: random.Random, cart_id: str) -> dict[str, Any]:
    picks = rng.sample(CATALOGUE, rng.randint(1, 3))
    quantities = [rng.randint(1, 2) for _ in picks]
    items = [
        {"sku": sku, "quantity": quantity, "unit_price": price}
        for (sku, price), quantity in zip(picks, quantities, strict=True)
    ]
    value = round(sum(q * price for (_, price), q in zip(picks, quantities, strict=True)), 2)
    return {"cart_id": cart_id, "items": items, "value": value, "currency": "EUR"}


def _order(cart: dict[str, Any], order_id: str) -> dict[str, Any]:
    return {
        "order_id": order_id,
        "cart_id": cart["cart_id"],
        "value": cart["value"],
        "currency": "EUR",
    }


def _aftercare(key: str, order: dict[str, Any], survey: dict[str, str], back: Step) -> list[Step]:
    """What may follow a purchase: a satisfaction score on the order (CSAT, sometimes NPS) by the
    survey's channel, and a return of the order (``back``: where and as whom). A draw of its own
    (seeded by the journey key) leaves the rest of the traffic as it was."""
    rng = random.Random(f"aftercare-{key}")
    steps = []
    if rng.random() < 0.3:
        scale, score = (
            ("nps", rng.choice((3, 6, 7, 8, 9, 10, 10)))
            if rng.random() < 0.3
            else ("csat", rng.choice((2, 3, 4, 4, 5, 5, 5)))
        )
        feedback = {"scale": scale, "score": score, "order_id": order["order_id"]}
        steps.append(Step(rng.uniform(1800, 7200), survey["channel"], "feedback",
                          {survey["kind"]: survey["id"]}, {"feedback": feedback}))  # fmt: skip
    if rng.random() < 0.12:
        returned = dict(order) | {"value": round(order["value"] * rng.choice((1, 1, 0.5)), 2)}
        steps.append(Step(rng.uniform(3600, 6 * 3600), back.channel, "return_requested",
                          back.identities, {"order": returned}))  # fmt: skip
    return steps


def anonymous_browse(rng: random.Random, c: Customer, key: str) -> list[Step]:
    web = c.ids("anonymous_id")
    steps = [Step(0, "web", "page_view", web, {"attributes": {"url": "/"}})]
    for _ in range(rng.randint(1, 4)):
        steps.append(Step(rng.uniform(20, 240), "web", "product_view", web))
    if rng.random() < 0.3:
        steps.append(Step(rng.uniform(10, 60), "web", "search", web))
    return steps


def web_purchase(rng: random.Random, c: Customer, key: str) -> list[Step]:
    web = c.ids("anonymous_id")
    known = c.ids("anonymous_id", "crm_id", "email_sha256")
    cart = _cart(rng, f"cart-{key}")
    order = _order(cart, f"order-{key}")
    steps = [
        Step(0, "web", "page_view", web),
        Step(rng.uniform(20, 120), "web", "product_view", web),
        Step(rng.uniform(10, 60), "web", "identify", known),
        Step(rng.uniform(10, 90), "web", "add_to_cart", known, {"cart": cart}),
        Step(rng.uniform(30, 300), "web", "checkout_started", known, {"cart": cart}),
        Step(rng.uniform(30, 240), "web", "purchase", known, {"order": order}),
    ]
    # Bought online, returned in a store (found by the crm id on the receipt).
    survey = {"channel": "email", "kind": "email_sha256", "id": c.email_sha256}
    back = Step(0, "store", "return_requested", c.ids("loyalty_id", "crm_id"))
    return steps + _aftercare(key, order, survey, back)


def cart_abandoned(rng: random.Random, c: Customer, key: str) -> list[Step]:
    known = c.ids("anonymous_id", "crm_id", "email_sha256")
    cart = _cart(rng, f"cart-{key}")
    steps = [
        Step(0, "web", "product_view", c.ids("anonymous_id")),
        Step(rng.uniform(10, 60), "web", "identify", known),
        Step(rng.uniform(10, 120), "web", "add_to_cart", known, {"cart": cart}),
    ]
    if rng.random() < 0.4:
        steps.append(Step(rng.uniform(30, 200), "web", "checkout_started", known, {"cart": cart}))
        if rng.random() < 0.5:
            steps.append(Step(rng.uniform(10, 60), "web", "payment_failed", known, {"cart": cart}))
    return steps


def web_cart_store_purchase(rng: random.Random, c: Customer, key: str) -> list[Step]:
    known = c.ids("anonymous_id", "crm_id", "email_sha256")
    till = c.ids("loyalty_id", "crm_id")
    cart = _cart(rng, f"cart-{key}")
    order = _order(cart, f"order-{key}")
    steps = [
        Step(0, "web", "identify", known),
        Step(rng.uniform(10, 120), "web", "add_to_cart", known, {"cart": cart}),
        Step(
            rng.uniform(1800, 7200),
            "store",
            "store_visit",
            till,
            {"attributes": {"store": "paris-01"}},
        ),
        Step(rng.uniform(300, 1200), "store", "purchase", till, {"order": order}),
    ]
    # Bought in a store, sent back through the website.
    survey = {"channel": "store", "kind": "loyalty_id", "id": c.loyalty_id}
    back = Step(0, "web", "return_requested", c.ids("crm_id", "email_sha256"))
    return steps + _aftercare(key, order, survey, back)


ANONYMOUS_CART_PREFIX = "anoncart-"
"""Cart ids of :func:`anonymous_cart_store_purchase`: none of them may ever be abandoned."""


def anonymous_cart_store_purchase(rng: random.Random, c: Customer, key: str) -> list[Step]:
    """The rule parcours exists for: a web cart left anonymously, a login 30-120 s later, and the
    purchase of that cart in a store 10-50 minutes after it, well before its deadline."""
    cart = _cart(rng, f"{ANONYMOUS_CART_PREFIX}{key}")
    login = rng.uniform(30, 120)
    return [
        Step(0, "web", "add_to_cart", c.ids("anonymous_id"), {"cart": cart}),
        Step(login, "web", "identify", c.ids("anonymous_id", "crm_id")),
        Step(
            rng.uniform(600, 3000) - login,
            "store",
            "purchase",
            c.ids("crm_id", "loyalty_id"),
            {"order": _order(cart, f"order-{key}")},
        ),
    ]


def app_purchase(rng: random.Random, c: Customer, key: str) -> list[Step]:
    app = c.ids("device_id", "crm_id")
    cart = _cart(rng, f"cart-{key}")
    steps = [
        Step(0, "mobile_app", "page_view", app),
        Step(rng.uniform(10, 90), "mobile_app", "product_view", app),
    ]
    steps.append(Step(rng.uniform(10, 90), "mobile_app", "add_to_cart", app, {"cart": cart}))
    if rng.random() < 0.7:
        order = _order(cart, f"order-{key}")
        steps.append(Step(rng.uniform(30, 300), "mobile_app", "purchase", app, {"order": order}))
        survey = {"channel": "mobile_app", "kind": "device_id", "id": c.device_id}
        back = Step(0, "web", "return_requested", c.ids("crm_id", "email_sha256"))
        steps += _aftercare(key, order, survey, back)
    return steps


def chatbot_then_phone(rng: random.Random, c: Customer, key: str) -> list[Step]:
    bot = c.ids("anonymous_id", "email_sha256")
    # The agent finds the customer by the e-mail the chatbot had, so the two link at once.
    phone = c.ids("phone_sha256", "crm_id", "email_sha256")
    topic = rng.choice(TOPICS)
    case = f"case-{key}"
    steps = [
        Step(0, "chatbot", "contact_started", bot, {"contact": {"case_id": case, "topic": topic}}),
        Step(
            rng.uniform(20, 120),
            "chatbot",
            "chatbot_fallback",
            bot,
            {"contact": {"case_id": case, "topic": topic}},
        ),
        Step(
            rng.uniform(10, 60),
            "chatbot",
            "contact_ended",
            bot,
            {"contact": {"case_id": case, "topic": topic, "outcome": "unresolved"}},
        ),
    ]
    if rng.random() < 0.75:
        outcome = rng.choice(("resolved", "resolved", "resolved", "escalated", "abandoned"))
        steps += [
            Step(
                rng.uniform(60, 1200),
                "phone",
                "contact_started",
                phone,
                {"contact": {"case_id": case, "topic": topic}},
            ),
            Step(
                rng.uniform(120, 900),
                "phone",
                "contact_ended",
                phone,
                {"contact": {"case_id": case, "topic": topic, "outcome": outcome}},
            ),
        ]
        survey = random.Random(f"survey-{key}")  # a draw of its own, as in _aftercare
        if survey.random() < 0.5:  # the call's closing survey rates the case
            score = survey.choice((3, 4, 4, 5) if outcome == "resolved" else (1, 1, 2, 3))
            feedback = {"scale": "csat", "score": score, "case_id": case}
            steps.append(
                Step(rng.uniform(5, 60), "phone", "feedback", phone, {"feedback": feedback})
            )
    return steps


def search_fail_live_chat(rng: random.Random, c: Customer, key: str) -> list[Step]:
    web = c.ids("anonymous_id")
    chat = c.ids("anonymous_id", "email_sha256")
    case = f"case-{key}"
    return [
        Step(0, "web", "search", web),
        Step(
            rng.uniform(5, 40),
            "web",
            "search_no_results",
            web,
            {"attributes": {"query": "gore-tex boots"}},
        ),
        Step(
            rng.uniform(10, 120),
            "live_chat",
            "contact_started",
            chat,
            {"contact": {"case_id": case, "topic": "sizing"}},
        ),
        Step(
            rng.uniform(60, 600),
            "live_chat",
            "contact_ended",
            chat,
            {
                "contact": {
                    "case_id": case,
                    "topic": "sizing",
                    "outcome": rng.choice(("resolved", "unresolved")),
                }
            },
        ),
    ]


def email_campaign(rng: random.Random, c: Customer, key: str) -> list[Step]:
    mail = c.ids("email_sha256")
    steps = [
        Step(
            0,
            "email",
            "message_sent",
            mail,
            {"attributes": {"campaign": "black-friday", "utm_source": "newsletter"}},
        )
    ]
    if rng.random() < 0.45:
        steps.append(Step(rng.uniform(300, 7200), "email", "message_opened", mail))
        if rng.random() < 0.5:
            steps.append(Step(rng.uniform(5, 120), "email", "message_clicked", mail))
            steps.append(
                Step(
                    rng.uniform(2, 10),
                    "web",
                    "page_view",
                    c.ids("anonymous_id", "email_sha256"),
                    {"attributes": {"utm_source": "newsletter", "utm_campaign": "black-friday"}},
                )
            )
    return steps


def sms_campaign(rng: random.Random, c: Customer, key: str) -> list[Step]:
    sms = c.ids("phone_sha256")
    steps = [Step(0, "sms", "message_sent", sms, {"attributes": {"campaign": "flash-sale"}})]
    if rng.random() < 0.3:
        steps.append(Step(rng.uniform(60, 1800), "sms", "message_clicked", sms))
        steps.append(
            Step(rng.uniform(2, 20), "mobile_app", "page_view", c.ids("device_id", "phone_sha256"))
        )
    return steps


def consent(rng: random.Random, c: Customer, key: str) -> list[Step]:
    channel = rng.choice(("email", "sms", "push"))
    granted = "true" if rng.random() < 0.8 else "false"
    return [
        Step(
            0,
            "web",
            "consent_updated",
            c.ids("crm_id", "email_sha256"),
            {"attributes": {"consent_channel": channel, "consent_granted": granted}},
        )
    ]


KIOSKS = ("kiosk-paris-01", "kiosk-lyon-02", "kiosk-lille-03")
BROKEN_IDS = ("undefined", "null", "00000000-0000-0000-0000-000000000000", "anonymous", "0")


def shared_kiosk(rng: random.Random, c: Customer, key: str) -> list[Step]:
    """A store kiosk every customer logs into: it must never merge two customers."""
    kiosk = {"device_id": rng.choice(KIOSKS), "crm_id": c.crm_id}
    return [
        Step(0, "kiosk", "identify", kiosk, {"attributes": {"store": "paris-01"}}),
        Step(rng.uniform(10, 120), "kiosk", "product_view", kiosk),
    ]


def broken_sdk(rng: random.Random, c: Customer, key: str) -> list[Step]:
    """An app build that sends a placeholder id next to the real one: the placeholder links nothing."""
    ids = {"anonymous_id": rng.choice(BROKEN_IDS), "email_sha256": c.email_sha256}
    return [
        Step(0, "mobile_app", "page_view", ids),
        Step(rng.uniform(10, 120), "mobile_app", "product_view", ids),
    ]


def loyalty_meets_email(rng: random.Random, c: Customer, key: str) -> list[Step]:
    """A loyalty-card shopper and an e-mail subscriber turn out to be one person at the till."""
    cart = _cart(rng, f"cart-{key}")
    return [
        Step(0, "store", "store_visit", c.ids("loyalty_id")),
        Step(rng.uniform(60, 600), "email", "message_clicked", c.ids("email_sha256")),
        Step(rng.uniform(600, 3600), "store", "identify", c.ids("loyalty_id", "email_sha256")),
        Step(
            rng.uniform(60, 600),
            "store",
            "purchase",
            c.ids("loyalty_id"),
            {"order": _order(cart, f"order-{key}")},
        ),
    ]


SCENARIOS: tuple[tuple[Scenario, float], ...] = (
    (shared_kiosk, 0.03),
    (broken_sdk, 0.02),
    (loyalty_meets_email, 0.04),
    (anonymous_browse, 0.22),
    (web_purchase, 0.12),
    (cart_abandoned, 0.12),
    (web_cart_store_purchase, 0.06),
    (anonymous_cart_store_purchase, 0.13),
    (app_purchase, 0.1),
    (chatbot_then_phone, 0.08),
    (search_fail_live_chat, 0.06),
    (email_campaign, 0.12),
    (sms_campaign, 0.06),
    (consent, 0.06),
)


def _customer(rng: random.Random, number: int) -> Customer:
    return Customer(
        number=number,
        crm_id=f"crm-{number:07d}",
        email_sha256=hash_email(f"customer{number}@example.com"),
        phone_sha256=hash_phone(
            f"+33 6 {number % 100:02d} {number // 100 % 100:02d} {number // 10000 % 100:02d} 00"
        ),
        loyalty_id=f"loy-{number:07d}",
        anonymous_id=f"ck-{rng.getrandbits(48):012x}",
        device_id=f"dev-{rng.getrandbits(48):012x}",
        timezone=rng.choice(TIMEZONES),
        consent=rng.choice(("email", "email", "email", "sms", "sms", "push", None, None, None)),
    )


def _timestamp(rng: random.Random, at: datetime) -> str | int:
    if rng.random() < 0.1:  # some channel services send epoch milliseconds
        return int(at.timestamp() * 1000)
    return at.isoformat(timespec="milliseconds")


def _opts_in(customer: Customer, step: Step, consented: set[int]) -> bool:
    """Consent is given once, on the customer's first identified touchpoint."""
    identified = "crm_id" in step.identities or "email_sha256" in step.identities
    if customer.consent is None or customer.number in consented or not identified:
        return False
    consented.add(customer.number)
    return True


def generate(
    events: int,
    seed: int = 7,
    customers: int | None = None,
    hours: float = 24.0,
    disorder_seconds: float = 5.0,
    weights: dict[str, float] | None = None,
    start: datetime = START,
) -> Iterator[dict[str, Any]]:
    """``events`` touchpoints from ``start`` on, in arrival order (event time plus up to
    ``disorder_seconds`` of shuffle); ``weights`` overrides the share of scenarios by name (the
    rest keep theirs). The same ``customers`` count gives the same customers whatever the seed."""
    rng = random.Random(seed)
    people = [_customer(rng, n) for n in range(customers or max(10, events // 12))]
    chosen = weights or {}
    scenarios = tuple(scenario for scenario, _ in SCENARIOS)
    shares = tuple(chosen.get(scenario.__name__, share) for scenario, share in SCENARIOS)
    out: list[tuple[float, dict[str, Any]]] = []
    journey = 0
    consented: set[int] = set()
    while len(out) < events:
        customer = rng.choice(people)
        scenario = rng.choices(scenarios, shares)[0]
        at = start + timedelta(seconds=rng.uniform(0, hours * 3600))
        journey += 1
        for step in scenario(rng, customer, f"{seed}-{journey}"):
            at += timedelta(seconds=step.after_seconds)
            attributes = {"timezone": customer.timezone} | step.extra.pop("attributes", {})
            if "consent_channel" not in attributes and _opts_in(customer, step, consented):
                attributes |= {"consent_channel": str(customer.consent), "consent_granted": "true"}
            event = {
                "event_id": f"ev-{seed}-{len(out):08d}",
                "occurred_at": _timestamp(rng, at),
                "channel": step.channel,
                "action": step.action,
                "identities": step.identities,
                "source": f"{step.channel}-service",
                "attributes": attributes,
                **step.extra,
            }
            out.append((at.timestamp() + rng.uniform(0, disorder_seconds), event))
            if len(out) >= events:
                break
    out.sort(key=lambda pair: pair[0])
    for _, event in out:
        yield event


def write_jsonl(events: Iterator[dict[str, Any]], handle: Any) -> int:
    count = 0
    for event in events:
        handle.write(json.dumps(event, separators=(",", ":")) + "\n")
        count += 1
    return count
