"""The one training loop (:class:`~recforge.train.trainer.Trainer`) shared by every neural model."""
