# The proxy's image: `strangler` as a non-root user, configured by files mounted from
# ConfigMaps (deploy/kustomize). Build from the repository root:
#   docker build -t registry.example.com/platform/strangler:0.1.0 .
# tests/deploy/test_dockerfile.py checks this file against pyproject.toml and the
# Kubernetes manifests (user, command, config path, ports).

# Build stage: the package and its dependencies into a virtual environment, so the
# final image carries the installed result and none of the sources or build tools.
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/strangler
WORKDIR /src
# What `pip install .` reads: the project file, the README it names as the long
# description, and the four package folders (pyproject.toml, [tool.setuptools]).
COPY pyproject.toml README.md ./
COPY proxy ./proxy
COPY flags ./flags
COPY legacy_adapters ./legacy_adapters
COPY reference ./reference
# A C compiler for the frame scanner's native core (proxy/relay/_wsscan.c); the install
# would fall back to the scanner in Python alone without one, so the build checks it.
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
RUN /opt/strangler/bin/pip install . \
    && /opt/strangler/bin/python -c "from strangler.proxy.relay.wsframes import NATIVE; assert NATIVE"

FROM python:3.11-slim
# Same base as the build stage, so the venv's interpreter path stays valid. No .pyc
# writes: the root filesystem is read-only in the pod.
ENV PATH=/opt/strangler/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
COPY --from=build /opt/strangler /opt/strangler
# A numeric user, so Kubernetes' runAsNonRoot can verify it without looking it up.
RUN groupadd --system --gid 10001 strangler \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin strangler
USER 10001:10001
# listen (client WebSockets) and admin_listen (/metrics, /healthz, /readyz).
EXPOSE 8080 8090
ENTRYPOINT ["strangler"]
CMD ["run", "--config", "/etc/strangler/config/strangler.yaml"]
