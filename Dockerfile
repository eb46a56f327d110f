# syntax=docker/dockerfile:1
# Two images from one Dockerfile; in both the role is the command (ENTRYPOINT `streamrec`):
#   docker build -t streamrec .                                  the full image (the last stage,
#                                                                `full`): every role
#   docker build --target serving -t streamrec-serving .         the lean serving image: no PyTorch
#   docker run streamrec consume
#   docker run streamrec retrain --every 15m
#   docker run streamrec-serving serve --host 0.0.0.0 --port 8000    (the default CMD of both)
# Serving only ranks with a trained model (numpy, scipy, FAISS), so its image leaves out torch (the
# `train` extra, most of the full image's size) and, like the full image, the benchmark extras and
# tooling/. `streamrec retrain` started in the lean image says that the image lacks PyTorch.
# Settings come from STREAMREC_* environment variables, as everywhere else.

ARG PYTHON_IMAGE=python:3.11-slim

# ---- venv: an empty self-contained virtualenv under /opt/venv ---------------------------------
FROM ${PYTHON_IMAGE} AS venv

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
RUN pip install --upgrade pip

# ---- source: what `pip install .` builds the wheel from ---------------------------------------
FROM ${PYTHON_IMAGE} AS source
WORKDIR /src
COPY pyproject.toml README.md ./
COPY core ./core
COPY storage ./storage
COPY model ./model
COPY consumer ./consumer
COPY retrain ./retrain
COPY serving ./serving
COPY cli ./cli
COPY streamrec_client ./streamrec_client

# ---- serving-builder: the product without any extra (no torch) ---------------------------------
FROM venv AS serving-builder
COPY --from=source /src /src
WORKDIR /src
# Not editable: the runtime stage gets only the venv, not /src.
RUN pip install .

# ---- full-builder: the product plus the `train` extra (torch) ----------------------------------
FROM venv AS full-builder
# torch first, pinned, from the CPU-only index: the default PyPI wheel pulls in GBs of CUDA libraries
# that a CPU container never uses. Its own layer, before the source, so source edits do not
# re-download it; the `train` extra's pin below is then already satisfied.
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
COPY --from=source /src /src
WORKDIR /src
RUN pip install '.[train]'

# ---- runtime: slim base, an unprivileged user, the entry point; each image adds its venv --------
FROM ${PYTHON_IMAGE} AS runtime

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN groupadd --system --gid 10001 streamrec \
 && useradd --system --uid 10001 --gid streamrec --home-dir /srv/streamrec --create-home \
            --shell /usr/sbin/nologin streamrec

# The working directory is the user's home so relative paths in Settings (e.g. the model artifact
# cache `.artifacts`) are writable without running as root.
WORKDIR /srv/streamrec
USER streamrec:streamrec

# Checks the serving role (the default CMD). docker-compose.yml overrides the healthcheck per role:
# consumer and retrain are probed on their Prometheus metrics ports instead.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]

ENTRYPOINT ["streamrec"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]

# ---- serving: the lean image (`--target serving`; docker-compose.yml's `serving` service) --------
FROM runtime AS serving
COPY --from=serving-builder /opt/venv /opt/venv
# 8000 serving HTTP (+ /metrics).
EXPOSE 8000

# ---- full: every role (the default target, last) ----------------------------------------------
FROM runtime AS full
COPY --from=full-builder /opt/venv /opt/venv
# 8000 serving HTTP (+ /metrics), 9101 consumer metrics, 9102 retrain metrics.
EXPOSE 8000 9101 9102
