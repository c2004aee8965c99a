# i9lyfe image: the api (`python -m api`: uvicorn on HOST:PORT) by default. docker-compose.yml runs the same
# image as the Ray head, the one-shot migrations and the api (which first joins the Ray cluster as a node:
# scripts/container_gateway.sh). Untested on the development machine, which has no Docker engine (README.md).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    RAY_USAGE_STATS_ENABLED=0 \
    VAR_DIR=/var/lib/i9lyfe \
    HOST=0.0.0.0 \
    PORT=8000

# A user of its own; the state directory and the Ray token's directory belong to it (a named volume mounted
# there starts with this ownership).
RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin i9lyfe \
 && mkdir -p /var/lib/i9lyfe /var/lib/i9lyfe-ray \
 && chown i9lyfe:i9lyfe /var/lib/i9lyfe /var/lib/i9lyfe-ray \
 && chmod 700 /var/lib/i9lyfe-ray

# The pinned dependencies (constraints.txt) and our packages, installed into site-packages; the source is
# removed after the install, so `python -m api` always runs the installed code.
COPY pyproject.toml constraints.txt README.md /tmp/src/
COPY api /tmp/src/api
COPY actors /tmp/src/actors
COPY storage /tmp/src/storage
RUN pip install -c /tmp/src/constraints.txt /tmp/src && rm -rf /tmp/src
COPY scripts/container_gateway.sh /usr/local/bin/i9lyfe-gateway

USER i9lyfe
WORKDIR /var/lib/i9lyfe
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '8000'), timeout=4)"]
CMD ["python", "-m", "api"]
