"""The Databricks asset bundle (``databricks.yml``, ``resources/``) and the Python that serves it.

``build`` stages what a deploy uploads (the apps' source folders, requirements pinned from
``requirements.lock``), ``generate`` writes the dashboard resources, ``deploy`` is ``make deploy``,
``cli_check`` validates the bundle with the official CLI against a loopback server, and ``tasks/``
holds the job tasks' entry points. ``build``, ``deploy`` and ``tasks/run_module.py`` use the standard
library only: they run before (or without) the project's virtual environment.
"""
