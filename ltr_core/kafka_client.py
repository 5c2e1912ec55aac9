"""What the Kafka producers and consumers of the platform share: how to reach the brokers (the
KAFKA_* settings as aiokafka's client options) and how an event becomes a record (its key).

Both sides use it: the pipeline's Kafka source and `ltr simulate --to kafka`
(`ltr_assets.ingest.kafka`), and the ranking service's Kafka sink (`ltr_serving.kafka_sink`),
which writes the topic the pipeline reads. aiokafka itself is imported by them, not here (only
the SSL context is built here, when a protocol with SSL asks for one).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ltr_core.events import id_text
from ltr_core.settings import KafkaSettings


def client_options(settings: KafkaSettings) -> dict[str, Any]:
    """Connection and security options shared by consumer, producer and admin client."""
    options: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap_servers,
        "security_protocol": settings.security_protocol,
        # Reaching the broker is bounded by connect_timeout_s around start(); requests get
        # longer, as one fetch may carry a whole partition.
        "request_timeout_ms": int(settings.request_timeout_s * 1000),
    }
    if settings.security_protocol in ("SSL", "SASL_SSL"):
        from aiokafka.helpers import create_ssl_context

        options["ssl_context"] = create_ssl_context(
            cafile=settings.ssl_cafile or None,
            certfile=settings.ssl_certfile or None,
            keyfile=settings.ssl_keyfile or None,
        )
    if settings.security_protocol.startswith("SASL"):
        options["sasl_mechanism"] = settings.sasl_mechanism or "PLAIN"
        options["sasl_plain_username"] = settings.sasl_username
        options["sasl_plain_password"] = settings.sasl_password.get_secret_value()
    return options


def event_key(event: Mapping[str, Any]) -> bytes | None:
    """An event's record key: its request id (else its case id), so the events of one
    recommendation list, and the feedback on it, share a partition and keep their order. The
    audit-log envelope keeps them under `context`. Read as the ingest reads them, so an id sent
    with surrounding spaces keys the same partition as the list it belongs to."""
    fields = event.get("context", event)
    if not isinstance(fields, Mapping):
        fields = event
    for name in ("request_id", "case_id", "case"):
        text = id_text(fields.get(name))
        if text is not None:
            return text.encode()
    return None
