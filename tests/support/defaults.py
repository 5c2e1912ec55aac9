"""The settings' defaults, for tests that call domain functions directly: domain functions take
their settings explicitly, so a test passes these (or a `replace` of them) instead of relying on
literal defaults that would duplicate the schema."""

from __future__ import annotations

from ltr_assets.learning.training import TrainingOptions
from ltr_core.settings import Settings

DEFAULTS = Settings.from_env({})
TRAINING = TrainingOptions.from_settings(DEFAULTS)
