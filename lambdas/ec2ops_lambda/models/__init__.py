"""Pydantic models of the workflows' inputs, step payloads and outputs."""
