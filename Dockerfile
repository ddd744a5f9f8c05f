# MIDAS image: the `midas` command, the Prefect flows and the SQL files, for every compose service
# (Prefect server, worker, collector). Built from the repository root: `docker compose build`.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MIDAS_HOME=/app \
    PREFECT_SERVER_ANALYTICS_ENABLED=false \
    DO_NOT_TRACK=1 \
    PREFECT_LOGGING_EXTRA_LOGGERS=midas \
    NUMBA_CACHE_DIR=/home/midas/.cache/numba

WORKDIR /app

# Dependencies first (cached while only the code changes), then the code, installed editable:
# midas finds sql/ next to the package and the deployments run the flows from /app.
COPY pyproject.toml README.md ./
COPY midas ./midas
COPY flows ./flows
COPY sql ./sql
COPY prefect.yaml ./
RUN pip install -e . \
    && useradd --create-home --uid 1000 midas \
    && mkdir -p /app/data /app/logs "$NUMBA_CACHE_DIR" \
    && chown -R midas:midas /app/data /app/logs /home/midas/.cache

USER midas
# Compile the book rebuild's numba code now, into NUMBA_CACHE_DIR (owned by midas, outside the
# volumes): a new container's first rebuild starts at once instead of compiling for 8-14 s.
RUN python -m midas.book.warmup
VOLUME ["/app/data", "/app/logs"]
CMD ["midas", "--help"]
