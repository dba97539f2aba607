"""Readers of inputs and atomic writers of outputs."""
