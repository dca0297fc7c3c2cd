"""Lowering: the QGraph into the integer Relax module, and its CPU build and execution."""
