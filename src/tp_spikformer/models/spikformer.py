"""Placeholder: this family is being written (see the models issue)."""
