# bouncer-queue: one image for every role (workers, db upgrade, simulator, the one-shot commands).
# Build: docker build -t bouncer-queue .     Run: docker run --env-file .env bouncer-queue workers
# Dependencies come from constraints.txt, the same pins scripts/venv and CI install.

FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md constraints.txt ./
COPY src ./src
RUN pip wheel --no-cache-dir --wheel-dir /wheels -c constraints.txt .

FROM python:3.11-slim
RUN useradd --create-home --home-dir /home/bouncer --uid 10001 bouncer
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links /wheels bouncer-queue && rm -rf /wheels
USER bouncer
WORKDIR /home/bouncer
# The embedded Valkey and SQLite live here when REDIS_URL / DATABASE_URL are unset: per container, so set both.
ENV BOUNCER_QUEUE_STATE_DIR=/home/bouncer/state \
    METRICS_HOST=0.0.0.0 \
    METRICS_PORT=9100 \
    LOG_JSON=true
EXPOSE 9100
# /livez: the event loop and the Redis heartbeat are fresh (see README, "Deployment").
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9100/livez', timeout=4)"]
ENTRYPOINT ["bouncer-queue"]
CMD ["workers"]
