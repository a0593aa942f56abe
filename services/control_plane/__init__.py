"""Control plane: launches the batch steps (Setup & Run), shows platform status."""
