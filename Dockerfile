# syntax=docker/dockerfile:1
# Image of the Kubernetes DRA bridge (redfish-dra-bridge), built from the project root:
#   docker build -t ghcr.io/redfish-composer/redfish-dra-bridge:0.1.0 .
ARG PYTHON_IMAGE=python:3.11-slim

# --- build: install the project into a virtualenv ------------------------------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY redfish_service ./redfish_service
COPY bridge ./bridge
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install . \
 && /opt/venv/bin/redfish-dra-bridge --help > /dev/null

# --- runtime: the virtualenv only, numeric non-root user ------------------------------------
FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="redfish-dra-bridge" \
      org.opencontainers.image.description="Kubernetes DRA bridge to a Redfish composability manager" \
      org.opencontainers.image.licenses="Apache-2.0"
# Byte code was compiled at install time; the root filesystem is read-only in the cluster.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
RUN groupadd --system --gid 65532 bridge \
 && useradd --system --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin bridge \
 && mkdir -p /etc/redfish-dra-bridge
COPY --from=build /opt/venv /opt/venv
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["redfish-dra-bridge"]
CMD ["--config", "/etc/redfish-dra-bridge/config.yaml"]
