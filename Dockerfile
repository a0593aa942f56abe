# syntax=docker/dockerfile:1
# One image for everything `docker compose up` runs from this repository: the four services, the
# one-shot init, the MLflow tracking server and the Spark jobs the control plane starts. It is built the
# way `make install` builds the local platform: Python packages from requirements.lock (`make
# install-python`), the Spark connector jars from Maven (`make jars`), the control plane's front-end
# assets from npm (`make web`). tests/deploy/test_compose.py checks it against the Makefile and the
# launcher (paths, versions, build steps).

# --- front-end assets (`make web`): ECharts and the world map, served by the control plane at /vendor
FROM node:20-bookworm-slim AS web
WORKDIR /web
COPY services/control_plane/web/package.json services/control_plane/web/package-lock.json \
     services/control_plane/web/build.mjs ./
RUN npm ci --no-audit --no-fund && npm run build

# --- the application -------------------------------------------------------------------------------
FROM python:3.11-slim-bookworm AS app

# Java 17 for Spark (and Maven, which resolves the connector jars below); procps: PySpark runs `ps`
RUN mkdir -p /usr/share/man/man1 \
 && apt-get update \
 && apt-get install -y --no-install-recommends openjdk-17-jre-headless maven procps \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
ENV PYTHONPATH=/app \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYSPARK_PYTHON=/usr/local/bin/python \
    PYSPARK_DRIVER_PYTHON=/usr/local/bin/python \
    PA_DATA_DIR=/data

# Exactly the pinned packages of requirements.lock, with the uv version the Makefile uses
COPY requirements.lock ./
RUN pip install --no-cache-dir uv==0.13.9 \
 && uv pip install --system --no-cache -r requirements.lock

# Spark's Kafka and Delta jars (and the broker classpath) into /app/.cache/jars, resolved once at build
# time as `make jars` does, so containers never download at run time. Maven's repository is a build
# cache, not part of the image.
COPY launcher/ launcher/
COPY payments_core/ payments_core/
COPY spark/ spark/
RUN --mount=type=cache,target=/app/.cache/m2 python -m launcher jars

COPY services/ services/
COPY dashboards/ dashboards/
COPY agents/ agents/
COPY --from=web /web/dist/ services/control_plane/web/dist/

# Run as an unprivileged user; /data (the lakehouse volume) and /mlflow (the tracking server's volume)
# belong to it, and a new named volume takes that ownership from the image.
RUN useradd --create-home --uid 10001 --user-group pa \
 && mkdir -p /data /mlflow \
 && chown pa:pa /data /mlflow
USER pa

EXPOSE 8000 8080 5000
CMD ["python", "-m", "services.control_plane", "serve", "--host", "0.0.0.0", "--port", "8080"]
