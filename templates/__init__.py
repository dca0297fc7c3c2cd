"""nnforge.templates: jinja2 templates for generated sources (one per kernel family)."""
