"""Learning from the platform's own interventions (pure estimators over logged impressions)."""
