"""The identity graph, pure: nodes keyed by identity, linked by the events that carry them.

Each identity is a node that knows its neighbours and its component's *label*: the strongest
identity of the component (``crm_id`` before ``loyalty_id`` … before ``anonymous_id``, then by
value). Labels spread by min-label propagation: a node that learns a smaller label adopts it and
tells its neighbours. The fixpoint does not depend on the order links arrive in, and nodes may
live on any partition: links travel between them as messages.

Merge guard: a component never holds two ``crm_id`` labels; a link that would join them is
refused and reported as an :class:`IdentityWarning`. The profile id is a hash of the label, so the
surviving profile is deterministic. No Kafka in here: the faust agent feeds messages and publishes
what comes back.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from parcours.schemas.sdk import IDENTITY_TYPES, is_blocklisted

_RANK = {kind: rank for rank, kind in enumerate(IDENTITY_TYPES)}
CRM = "crm_id"


def identity_key(kind: str, value: str) -> str:
    return f"{kind}:{value}"


def label_order(label: str) -> tuple[int, str]:
    """Strongest identity first; ``event:`` labels (no usable identity) come last."""
    kind, _, value = label.partition(":")
    return _RANK.get(kind, len(_RANK)), value


def profile_id(label: str) -> str:
    """Opaque and stable: the same component always gets the same id, on any worker."""
    return "p-" + hashlib.blake2b(label.encode(), digest_size=10).hexdigest()


def usable_identities(identities: dict[str, str], event_id: str) -> list[str]:
    """The event's identities that may link, strongest first (never empty)."""
    keys = [
        identity_key(kind, identities[kind])
        for kind in IDENTITY_TYPES
        if kind in identities and not is_blocklisted(identities[kind])
    ]
    return keys or [f"event:{event_id}"]


def _first_between(node: Node, other: str, occurred_at: int, event_id: str) -> bool:
    """Record a link to ``other``; True if it is their first, or earlier than any before."""
    known = node.neighbours.get(other)
    if known is not None and known <= (occurred_at, event_id):
        return False
    node.neighbours[other] = (occurred_at, event_id)
    return True


def _crm_of(label: str) -> str | None:
    return label if label.startswith(CRM + ":") else None


@dataclass
class Node:
    label: str
    # neighbour → earliest (occurred_at, event_id) of a link between the two: a later event
    # carrying the same pair need not travel (the label would spread anyway), an earlier one must
    # (a crm id's first claim on a shared identity is what warnings report).
    neighbours: dict[str, tuple[int, str]] = field(default_factory=dict)
    # crm id → its earliest (occurred_at, event_id) claim on this node. Which crm a shared node
    # joined depends on arrival order; the set of claimants and their first claims does not.
    claims: dict[str, tuple[int, str]] = field(default_factory=dict)
    # Labels this node had before its current one: the merges it announced.
    replaced: list[str] = field(default_factory=list)

    def claim(self, crm: str, occurred_at: int, event_id: str) -> bool:
        """Record a crm's claim; True if it is the crm's first or an earlier one."""
        known = self.claims.get(crm)
        if known is not None and known <= (occurred_at, event_id):
            return False
        self.claims[crm] = (occurred_at, event_id)
        return True

    def to_json(self) -> dict[str, Any]:
        claims = {crm: list(first) for crm, first in self.claims.items()}
        neighbours = {key: list(first) for key, first in self.neighbours.items()}
        data = {"label": self.label, "neighbours": neighbours, "claims": claims}
        return data | ({"replaced": self.replaced} if self.replaced else {})

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Node:
        claims = {crm: (int(at), str(eid)) for crm, (at, eid) in data.get("claims", {}).items()}
        neighbours = {k: (int(at), str(eid)) for k, (at, eid) in data["neighbours"].items()}
        return cls(data["label"], neighbours, claims, list(data.get("replaced", ())))


@dataclass(frozen=True)
class Link:
    """Sent to ``target``'s partition: ``sender`` (labelled ``label``) is linked to it."""

    target: str
    sender: str
    label: str
    event_id: str
    occurred_at: int


@dataclass(frozen=True)
class Merge:
    """Every event and journey of ``loser`` now belongs to ``survivor`` (profile ids)."""

    loser: str
    survivor: str
    identity: str
    """The identity whose relabelling revealed the merge."""
    occurred_at: int
    """Event time of the event behind the link that revealed it (0 when re-announced)."""


@dataclass(frozen=True)
class IdentityWarning:
    """``identity`` is shared by several crm ids (kiosk, family device); ``crm_id`` is one of them,
    first seen on it with ``event_id``. Links that would join two of them are refused."""

    identity: str
    crm_id: str
    event_id: str
    occurred_at: int

    @property
    def warning_id(self) -> str:
        text = f"{self.identity}|{self.crm_id}"
        return "w-" + hashlib.blake2b(text.encode(), digest_size=10).hexdigest()


@dataclass
class Effects:
    links: list[Link] = field(default_factory=list)
    merges: list[Merge] = field(default_factory=list)
    warnings: list[IdentityWarning] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.links or self.merges)


class IdentityGraph:
    """The nodes this partition owns, in any mutable mapping (a faust table in the worker)."""

    def __init__(self, nodes: MutableMapping[str, dict[str, Any]]) -> None:
        self.nodes = nodes
        self.tags: dict[str, Any] = {}
        """Saved with every node (the worker records the node's partition)."""

    def label_of(self, identity: str) -> str:
        data = self.nodes.get(identity)
        return Node.from_json(data).label if data else identity

    def observe(
        self, identities: list[str], event_id: str, occurred_at: int
    ) -> tuple[str, Effects]:
        """An event arrived at its strongest identity ``identities[0]``: its label, and links out."""
        home_key, others = identities[0], identities[1:]
        home = self._node(home_key)
        effects = Effects()
        for other in others:
            if not _first_between(home, other, occurred_at, event_id):
                continue
            effects.links.append(Link(other, home_key, home.label, event_id, occurred_at))
        if effects.links:
            self._save(home_key, home)
        return home.label, effects

    def receive(self, link: Link) -> Effects:
        node = self._node(link.target)
        effects = Effects()
        mine, theirs = _crm_of(node.label), _crm_of(link.label)
        if theirs:
            effects.warnings = self._claim(link.target, node, theirs, link)
        if mine and theirs and mine != theirs:
            self._save(link.target, node)
            return effects
        _first_between(node, link.sender, link.occurred_at, link.event_id)
        if label_order(link.label) < label_order(node.label):
            effects.merges.append(
                Merge(profile_id(node.label), profile_id(link.label), link.target, link.occurred_at)
            )
            node.replaced.append(node.label)
            node.label = link.label
            effects.links.extend(self._spread(link.target, node, exclude=link.sender, cause=link))
        elif label_order(node.label) < label_order(link.label):
            # The sender is behind: teach it our label (it will spread it on its side).
            effects.links.append(
                Link(link.sender, link.target, node.label, link.event_id, link.occurred_at)
            )
        self._save(link.target, node)
        return effects

    def _spread(self, key: str, node: Node, *, exclude: str, cause: Link) -> Iterable[Link]:
        for neighbour in node.neighbours:
            if neighbour != exclude:
                yield Link(neighbour, key, node.label, cause.event_id, cause.occurred_at)

    def _claim(self, key: str, node: Node, crm: str, link: Link) -> list[IdentityWarning]:
        """Report every crm that claims a shared node, each with its first claim."""
        newcomer = crm not in node.claims
        if not node.claim(crm, link.occurred_at, link.event_id) or len(node.claims) < 2:
            return []
        # The second claimant makes the first one a party to the conflict too.
        reported = node.claims if newcomer and len(node.claims) == 2 else {crm: node.claims[crm]}
        return [IdentityWarning(key, c, eid, at) for c, (at, eid) in sorted(reported.items())]

    def _node(self, key: str) -> Node:
        data = self.nodes.get(key)
        return Node.from_json(data) if data else Node(key)

    def _save(self, key: str, node: Node) -> None:
        self.nodes[key] = node.to_json() | self.tags

    def announce(self, key: str) -> Effects:
        """Everything node ``key`` has told others, again: a link to each neighbour with its label,
        the merge of each label it replaced, and a warning for each crm that claims it if several
        do. Receivers ignore what they already know (a warning is the same row again); a new
        owner of the node's partition sends this because the last owner's messages may have died
        with it after the node was saved."""
        node = self._node(key)
        effects = Effects()
        for neighbour, (at, event_id) in sorted(node.neighbours.items()):
            effects.links.append(Link(neighbour, key, node.label, event_id, at))
        survivor = profile_id(node.label)
        effects.merges = [Merge(profile_id(old), survivor, key, 0) for old in node.replaced]
        if len(node.claims) > 1:
            claims = sorted(node.claims.items())
            effects.warnings = [IdentityWarning(key, c, eid, at) for c, (at, eid) in claims]
        return effects
