"""The systolic backend: a fixed R x C output-stationary int MAC array driven by a per-model program."""
