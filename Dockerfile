# The graspfleet image: what the Helm chart (helm/graspfleet) and container-based Ray clusters run.
#
#   docker build -t graspfleet:0.1.0 .
#
# Python 3.11, the CPU build of torch (pinned, installed first so no dependency range pulls a newer
# or a CUDA build; for a GPU learner build with --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu126),
# graspfleet with its generated gRPC code, redis-server (a `graspfleet train` without --redis starts
# a private one), and wget (KubeRay's probes). It runs as uid 1000, as the chart's pods require.
FROM python:3.11-slim-bookworm

ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu

RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends redis-server wget \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --uid 1000 --user-group --create-home --shell /bin/bash graspfleet

ENV PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1
RUN pip install "torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX}"

WORKDIR /opt/graspfleet
COPY pyproject.toml README.md ./
COPY protos ./protos
COPY graspfleet ./graspfleet
COPY actors ./actors
COPY learner ./learner
COPY replay ./replay
COPY orchestrator ./orchestrator
# the protocol code is generated here, as `make protos` does, then installed with the package
RUN pip install "grpcio-tools>=1.70" \
    && python -m replay.codegen \
    && pip install . \
    && python -c "import torch, replay.v1.replay_pb2; assert torch.__version__.startswith('${TORCH_VERSION}')"

USER 1000:1000
WORKDIR /home/graspfleet
ENTRYPOINT []
CMD ["graspfleet", "--help"]
