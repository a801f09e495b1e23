# eventtrace: Kubernetes Events as OpenTelemetry traces.
#
#   docker build -t eventtrace:0.1.0 .
#   docker run --rm eventtrace:0.1.0 demo --output console
#
# Two stages. The builder installs the dependencies exactly as requirements.lock pins them,
# every file checked against its hash, then the package from the repo root (no dev
# extras) into a virtualenv; the final image gets that virtualenv and nothing else: no pip
# cache, no sources, no build tools. Every dependency ships manylinux wheels for CPython
# 3.11 (amd64 and arm64). Both stages use the same base, so the venv's python symlink
# stays valid.
#
# The base is pinned by digest: the multi-platform index Docker Hub served for
# python:3.11.16-slim-bookworm on 2026-08-28. To move it, take the new digest from
# `docker buildx imagetools inspect python:3.11-slim-bookworm` and change both FROM lines.

FROM python:3.11.16-slim-bookworm@sha256:0bee7276f83efd4a1ee05bbbf4281d95ed28e079220a9457f25a93e3f1e3c31b AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore

RUN python -m venv /opt/eventtrace
ENV PATH=/opt/eventtrace/bin:$PATH

WORKDIR /src
# The locked dependencies first (a layer that changes only with the lock), then only what
# the package build reads (pyproject names README.md as its readme).
COPY requirements.lock ./
RUN pip install --require-hashes --no-deps -r requirements.lock
COPY pyproject.toml README.md ./
COPY eventtrace ./eventtrace
RUN pip install --no-deps .


FROM python:3.11.16-slim-bookworm@sha256:0bee7276f83efd4a1ee05bbbf4281d95ed28e079220a9457f25a93e3f1e3c31b

LABEL org.opencontainers.image.title="eventtrace" \
      org.opencontainers.image.description="Kubernetes Events as OpenTelemetry traces, exported over OTLP" \
      org.opencontainers.image.licenses="Apache-2.0"

# A fixed numeric user, the one the Helm chart's securityContext runs as; no home, no shell.
RUN groupadd --system --gid 10001 eventtrace \
 && useradd --system --uid 10001 --gid 10001 --no-create-home \
      --home-dir /nonexistent --shell /usr/sbin/nologin eventtrace

COPY --from=builder /opt/eventtrace /opt/eventtrace

ENV PATH=/opt/eventtrace/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    EVENTTRACE_METRICS_ADDR=0.0.0.0:8080

USER 10001:10001
WORKDIR /tmp
# /metrics, /healthz, /readyz
EXPOSE 8080

ENTRYPOINT ["eventtrace"]
CMD ["run"]
