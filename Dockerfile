# One image for the four services and the Spark jobs (docker compose up).

# Front-end assets (chart library) from npm at build time: the app serves them, no CDN at run time.
FROM node:20-bookworm-slim AS web
WORKDIR /web
COPY services/control_plane/web/package.json services/control_plane/web/package-lock.json \
     services/control_plane/web/build.mjs ./
RUN npm ci --no-audit --no-fund && npm run build

FROM python:3.11-slim-bookworm AS app

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
COPY --from=web /web/dist/ services/control_plane/web/dist/
EXPOSE 8000 8080
CMD ["python", "-m", "services.control_plane", "serve", "--host", "0.0.0.0", "--port", "8080"]
