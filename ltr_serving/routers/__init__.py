"""One router per concern: ranking, health and metrics, reload."""
