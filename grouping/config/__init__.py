"""The run configuration: the pydantic schema and how presets and overrides build it."""
