"""Converters that produce GLM builds from Hugging Face checkpoints (GGUF, compressed-tensors).

They depend on registry.schema and nothing above it; the CLI calls them.
"""
