# syntax=docker/dockerfile:1
# One image for every streamrec role; the role is the command:
#   docker run IMAGE consume
#   docker run IMAGE retrain --every 15m
#   docker run IMAGE serve --host 0.0.0.0 --port 8000      (the default CMD)
# Settings come from STREAMREC_* environment variables, as everywhere else.

ARG PYTHON_IMAGE=python:3.11-slim

# ---- builder: a self-contained virtualenv under /opt/venv --------------------------------------
FROM ${PYTHON_IMAGE} AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

# torch first, pinned, from the CPU-only index: the default PyPI wheel pulls in GBs of CUDA libraries
# that a CPU container never uses. Its own layer so source edits do not re-download it.
RUN pip install --upgrade pip \
 && pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu

WORKDIR /src
COPY pyproject.toml README.md ./
COPY core ./core
COPY storage ./storage
COPY model ./model
COPY consumer ./consumer
COPY retrain ./retrain
COPY serving ./serving
COPY cli ./cli
# Not editable: the runtime stage gets only the venv, not /src.
RUN pip install .

# ---- runtime: slim base + the venv, running as an unprivileged user ---------------------------
FROM ${PYTHON_IMAGE} AS runtime

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN groupadd --system --gid 10001 streamrec \
 && useradd --system --uid 10001 --gid streamrec --home-dir /srv/streamrec --create-home \
            --shell /usr/sbin/nologin streamrec

COPY --from=builder /opt/venv /opt/venv

# The working directory is the user's home so relative paths in Settings (e.g. the model artifact
# cache `.artifacts`) are writable without running as root.
WORKDIR /srv/streamrec
USER streamrec:streamrec

# 8000 serving HTTP (+ /metrics), 9101 consumer metrics, 9102 retrain metrics.
EXPOSE 8000 9101 9102

# Checks the serving role (the default CMD). docker-compose.yml overrides the healthcheck per role:
# consumer and retrain are probed on their Prometheus metrics ports instead.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]

ENTRYPOINT ["streamrec"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
