"""parcours: real-time omnichannel customer journeys.

The code lives in the repository's top-level folders, installed as subpackages:
``parcours.schemas`` (schemas/), ``parcours.streams`` (streams/), ``parcours.sinks`` (sinks/),
``parcours.deploy`` (deploy/). Imports point one way: deploy → streams, sinks → schemas.
"""

__version__ = "0.1.0"
