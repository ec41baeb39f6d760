# syntax=docker/dockerfile:1
# The GAN image service's serving image: `bentoml serve` + ONNX Runtime + the bundled models/.
# Only the service's dependencies (pyproject's `dependencies` + the `cpu` or `gpu` extra): no torch,
# no training code. Settings are the GAN_* environment variables (service/settings.py).
#
#   CPU image (default):  docker build -t gan-service .
#   GPU image:            docker build --build-arg VARIANT=gpu -t gan-service:gpu .
#   No registry/daemon:   make image   (buildah; builds a local Debian base first, see docs/deploy.md)
#   Run:                  docker run -p 3000:3000 gan-service
#
# BASE_IMAGE must be Debian/Ubuntu-like with python3 (>= 3.11) and its venv module on the PATH.
ARG BASE_IMAGE=python:3.11-slim-bookworm
ARG CUDA_IMAGE=nvidia/cuda:13.0.2-cudnn-runtime-ubuntu24.04
ARG VARIANT=cpu

# --- Python on each kind of base --------------------------------------------------------------
FROM ${BASE_IMAGE} AS python-cpu

# CUDA + cuDNN runtime: ONNX Runtime's CUDA provider finds libcudnn/libcublas on the system path.
# Its CUDA major must be the one onnxruntime-gpu was built for (1.2x: 12, 1.31: 13).
# Ubuntu 24.04's python3 is 3.12. Distro packages are not pinned: the CUDA tag pins the distro.
FROM ${CUDA_IMAGE} AS python-gpu
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
    && rm -rf /var/lib/apt/lists/*

# --- builder: a venv with the dependencies, nothing else --------------------------------------
# (DL3006: python-${VARIANT} is one of the stages above, not a registry image.)
# hadolint ignore=DL3006
FROM python-${VARIANT} AS builder
ARG VARIANT
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
WORKDIR /build
COPY pyproject.toml deploy/docker/requirements.py ./
# Behind a TLS-intercepting proxy, pass its CA bundle as a build secret (not kept in the image):
#   docker build --secret id=pip_cert,src=/etc/ssl/certs/ca-certificates.crt .
RUN --mount=type=secret,id=pip_cert \
    if [ -s /run/secrets/pip_cert ]; then export PIP_CERT=/run/secrets/pip_cert; fi \
    && python3 requirements.py --extra "${VARIANT}" > requirements.txt \
    && python3 -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir -r requirements.txt \
    && if [ "${VARIANT}" = gpu ]; then /opt/venv/bin/python -c "import onnxruntime as o; assert 'CUDAExecutionProvider' in o.get_available_providers(), o.get_available_providers()"; fi \
    && /opt/venv/bin/pip uninstall --yes pip setuptools \
    && find /opt/venv -type d -name tests -path '*/site-packages/numpy/*' -prune -exec rm -rf {} + \
    && rm -rf /opt/venv/share

# --- the serving image ------------------------------------------------------------------------
# hadolint ignore=DL3006
FROM python-${VARIANT} AS runtime
ARG VARIANT
ARG UID=10001
LABEL org.opencontainers.image.title="gan-service" \
      org.opencontainers.image.description="GAN image service: bentoml serve + ONNX Runtime (${VARIANT})" \
      org.opencontainers.image.licenses="MIT"

RUN groupadd --gid "${UID}" gan \
    && useradd --no-log-init --uid "${UID}" --gid gan --home-dir /home/gan --create-home \
       --shell /usr/sbin/nologin gan

COPY --from=builder /opt/venv /opt/venv
WORKDIR /app

# BENTOML_HOME holds BentoML's scratch state (Prometheus multiprocess files): under /tmp, so
# the root filesystem can be read-only with an emptyDir/tmpfs on /tmp.
ENV PATH=/opt/venv/bin:${PATH} \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    BENTOML_HOME=/tmp/bentoml \
    BENTOML_DO_NOT_TRACK=true \
    ORT_DISABLE_TELEMETRY=1 \
    BENTOML_HOST=0.0.0.0 \
    BENTOML_PORT=3000 \
    GAN_MODELS_DIR=/app/models

USER ${UID}:${UID}
EXPOSE 3000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python3", "-c", "import os, urllib.request as u; u.urlopen('http://127.0.0.1:%s/readyz' % os.environ.get('BENTOML_PORT', '3000'), timeout=4)"]
ENTRYPOINT ["bentoml", "serve", "service.service:GanService"]

# Last, so that a change to the code or the models rebuilds only these layers. Owned by root and
# not writable by the service's user.
COPY models/ ./models/
COPY contract/ ./contract/
COPY service/ ./service/
