# The one image every Cordon process runs from: `cordon gateway run`, `cordon gateway
# seal`, `cordon gateway audit-api`, `cordon replicator run`, `cordon aggregator run`.
# Wheels are built in the first stage; the final stage has no compiler, no pip cache
# and runs as an unprivileged user with a read-only root filesystem in mind (state goes
# to /var/lib/cordon, a volume).

FROM python:3.11-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY cordon ./cordon
COPY cordon_cli ./cordon_cli
COPY gateway ./gateway
COPY replicator ./replicator
COPY aggregator ./aggregator
RUN python -m pip wheel --no-cache-dir --wheel-dir /wheels '.[server]'

FROM python:3.11-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1
COPY --from=build /wheels /wheels
RUN python -m pip install --no-cache-dir --no-index --find-links=/wheels 'cordon[server]' \
    && rm -rf /wheels \
    && groupadd --system --gid 10001 cordon \
    && useradd --system --uid 10001 --gid cordon --home-dir /var/lib/cordon --shell /usr/sbin/nologin cordon \
    && mkdir -p /var/lib/cordon /etc/cordon \
    && chown cordon:cordon /var/lib/cordon
USER 10001:10001
WORKDIR /var/lib/cordon
EXPOSE 8401 8410 8500 9480
# Every HTTP process answers /healthz; the sealer serves none (this check then fails,
# and the orchestrator's own policy applies: Kubernetes uses the probes in
# deploy/kubernetes instead).
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('CORDON_HEALTH_PORT', '8401') + '/healthz', timeout=2)"]
ENTRYPOINT ["cordon"]
CMD ["--help"]
