"""The online comparison of a candidate model with the live one (pure statistics and rules)."""
