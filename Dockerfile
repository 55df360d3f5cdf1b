# ocync's container image: `docker build -t ocync:0.1.0 .`
# Both stages use the same base so that the virtual environment's interpreter path stays valid.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY ocync_core ./ocync_core
COPY plugins ./plugins
COPY conformance ./conformance
# gcp and azure: the credentials of GKE and AKS workload identity for the GAR and ACR plugins.
ARG OCYNC_EXTRAS=gcp,azure
RUN python -m venv /opt/ocync \
 && /opt/ocync/bin/pip install --upgrade pip \
 && /opt/ocync/bin/pip wheel --no-deps --wheel-dir /tmp/wheels . \
 && /opt/ocync/bin/pip install "$(ls /tmp/wheels/ocync-*.whl)${OCYNC_EXTRAS:+[$OCYNC_EXTRAS]}" \
 && /opt/ocync/bin/ocync --version

FROM ${PYTHON_IMAGE}
ENV PATH=/opt/ocync/bin:$PATH \
    HOME=/home/ocync \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# A fixed numeric uid/gid, so that Kubernetes' runAsNonRoot can check it without a passwd lookup.
RUN groupadd --system --gid 10001 ocync \
 && useradd --system --uid 10001 --gid 10001 --home-dir /home/ocync --create-home \
    --shell /usr/sbin/nologin ocync \
 && install -d -o 10001 -g 10001 /home/ocync/.cache/ocync
COPY --from=builder /opt/ocync /opt/ocync
USER 10001:10001
WORKDIR /home/ocync
# `ocync watch` serves /healthz, /readyz and /metrics here.
EXPOSE 9090
ENTRYPOINT ["ocync"]
CMD ["--help"]
