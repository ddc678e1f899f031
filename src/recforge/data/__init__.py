"""Data layer: vocabularies, interaction logs, catalogs, readers, named datasets and splits."""
