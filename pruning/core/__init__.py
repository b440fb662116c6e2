"""The core: models and data sources, masks, methods, structural removal, measurements."""
