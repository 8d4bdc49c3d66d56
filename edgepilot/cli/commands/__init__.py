"""Command groups of the ``edgepilot`` CLI; each module defines ``register(app)``."""
