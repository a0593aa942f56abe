# One image for the four services and the Spark jobs (docker compose up).
FROM python:3.11-slim-bookworm

RUN apt-get update \
 && apt-get install -y --no-install-recommends openjdk-17-jre-headless maven procps \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
ENV PYTHONPATH=/app PYTHONUNBUFFERED=1 UV_CACHE_DIR=/root/.cache/uv \
    PA_CACHE_DIR=/app/.cache PA_DATA_DIR=/data PA_WAREHOUSE_DIR=/data/warehouse \
    PYSPARK_PYTHON=/usr/local/bin/python

COPY requirements.lock pyproject.toml ./
RUN pip install --no-cache-dir uv==0.13.9 && uv pip install --system --no-cache -r requirements.lock

# Spark connector jars resolved at build time, so containers never download at run time.
COPY launcher/ launcher/
RUN python -m launcher jars

COPY . .
EXPOSE 8000 8080
CMD ["python", "-m", "services.control_plane", "serve", "--host", "0.0.0.0", "--port", "8080"]
