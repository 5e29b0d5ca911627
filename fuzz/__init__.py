"""Coverage-guided fuzz targets (atheris) over the ingest layer's parsers and decoders, and `petstream fuzz`."""
