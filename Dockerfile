# Baton server image: `docker build -t baton .` then `docker run -p 50051:50051 -p 9464:9464 -v baton:/var/lib/baton baton`.
# The builder makes a wheel of the project and installs it with its runtime dependencies into a venv at /opt/baton;
# the runtime stage copies only that venv (no compilers, no pip caches, no sources).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_INPUT=1
RUN python -m venv /opt/baton
WORKDIR /build

# Dependencies first, in their own layer: it is rebuilt only when pyproject.toml changes.
COPY pyproject.toml README.md ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > requirements.txt \
    && /opt/baton/bin/pip install -r requirements.txt

# The project itself: hand-written code (src/) and the committed generated code (generated/).
COPY src ./src
COPY generated ./generated
RUN pip wheel --no-deps --wheel-dir /wheels . \
    && /opt/baton/bin/pip install --no-deps /wheels/baton-*.whl \
    && /opt/baton/bin/baton --help >/dev/null

FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --system --gid 10001 baton \
    && useradd --system --uid 10001 --gid baton --home-dir /var/lib/baton --no-create-home \
        --shell /usr/sbin/nologin baton \
    && mkdir -p /var/lib/baton \
    && chown baton:baton /var/lib/baton
COPY --from=builder /opt/baton /opt/baton
ENV PATH=/opt/baton/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    BATON_HOST=0.0.0.0 \
    BATON_METRICS_HOST=0.0.0.0 \
    BATON_DATABASE_URL=sqlite+aiosqlite:////var/lib/baton/baton.db
WORKDIR /var/lib/baton
USER 10001:10001
# 50051: gRPC (with health and reflection); 9464: Prometheus /metrics.
EXPOSE 50051 9464
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 CMD ["baton", "health"]
ENTRYPOINT ["baton"]
CMD ["serve"]
