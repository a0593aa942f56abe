"""The local platform launcher: installs and runs Kafka, Redis, PostgreSQL and the services
without Docker. Driven by `make` (see the Makefile); `python -m launcher --help` lists commands."""
