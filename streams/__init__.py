"""Stream processing: pure stage logic (``ingest``) and the faust runtime around it (``app``)."""
