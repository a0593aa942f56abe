"""HTTP routes by area; each module's ``router`` holds its page (HTML) and its ``/api`` endpoints."""
