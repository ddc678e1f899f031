"""Serving: ``create_app(run_or_model_dir, ServeSettings(...))`` -> a FastAPI app with durable feedback and metrics."""

from recforge.serve.app import create_app
from recforge.serve.settings import ServeSettings
from recforge.serve.store import FeedbackStore

__all__ = ["FeedbackStore", "ServeSettings", "create_app"]
