# eventtrace: Kubernetes Events as OpenTelemetry traces.
#
#   docker build -t eventtrace:0.1.0 .
#   docker run --rm eventtrace:0.1.0 demo --output console
#
# Two stages. The builder builds the package from the repo root as `python3 dev.py bench`
# measures it: its pure core (setup.py's COMPILED) compiled to C with mypyc, ~10 % less
# CPU an event (bench/RESULTS.md), then installs that wheel, no dev extras, into a
# virtualenv. The compiler and mypy live in the builder alone (mypy in a venv of its
# own); the final image gets the eventtrace virtualenv and nothing else: no pip cache,
# no sources, no build tools. Every dependency ships manylinux wheels for CPython 3.11
# (amd64 and arm64). Both stages use the same base, so the venv's python symlink stays
# valid.

FROM python:3.11.16-slim-bookworm AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore

# What compiles the core: a C compiler and libc headers (the base has Python's), and
# mypyc with setuptools in /opt/build, a venv the final stage never sees.
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/* \
 && python -m venv /opt/build \
 && /opt/build/bin/pip install "setuptools==84.2.1" "mypy==2.4.1"

RUN python -m venv /opt/eventtrace
ENV PATH=/opt/eventtrace/bin:$PATH

WORKDIR /src
# Only what the package build reads (pyproject names README.md as its readme).
COPY pyproject.toml setup.py README.md ./
COPY eventtrace ./eventtrace
RUN EVENTTRACE_COMPILE=1 /opt/build/bin/pip wheel --no-build-isolation --no-deps \
      --wheel-dir /tmp/wheels . \
 && pip install /tmp/wheels/eventtrace-*.whl \
 && python -c "import eventtrace.assemble as core; assert core.__file__.endswith('.so'), core.__file__"


FROM python:3.11.16-slim-bookworm

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
