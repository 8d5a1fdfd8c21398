"""The contract: Avro schemas and codec, the touchpoint SDK, settings and errors.

Everything else in parcours depends on this package; it depends on nothing of parcours.
"""
