"""Moderation: rules stage, classifier callout with circuit breaker, reputation, decisions."""

from livechat.services.moderation.breaker import BreakerState, CircuitBreaker
from livechat.services.moderation.classifier import (
    Classifier,
    ClassifierError,
    ClassifierVerdict,
    HttpClassifier,
)
from livechat.services.moderation.pipeline import (
    ACCEPTED,
    SHADOWED,
    STRIKES,
    TOMBSTONE_BUDGET_S,
    Decision,
    ModerationPipeline,
    ReviewItem,
    ReviewQueue,
    Verdict,
)
from livechat.services.moderation.rules import RuleHit, Rules

__all__ = [
    "ACCEPTED",
    "SHADOWED",
    "STRIKES",
    "TOMBSTONE_BUDGET_S",
    "BreakerState",
    "CircuitBreaker",
    "Classifier",
    "ClassifierError",
    "ClassifierVerdict",
    "Decision",
    "HttpClassifier",
    "ModerationPipeline",
    "ReviewItem",
    "ReviewQueue",
    "RuleHit",
    "Rules",
    "Verdict",
]
