# syntax=docker/dockerfile:1
# Relais worker image: one image for every stage, sink, topic tool and the DMP / INSi sandboxes.
#   docker build -t relais:latest .
#   docker run --rm relais:latest --help

# ---- build: the locked dependencies, then the project, into a venv ---------------------------
# No resolver runs and nothing unpinned is fetched: requirements/*.lock (`make lock`) pin every
# package with its hashes, wheels only. The image carries production's dependencies and nothing
# else: the local broker, the MSSanté sandbox's SMTP server and the load tools are extras
# (relais[local], relais[load]) that `make demo` and `make test` install.
FROM python:3.11-slim AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

COPY requirements/production.lock requirements/build.lock /src/requirements/
# The build backend (setuptools) in a venv of its own: it builds the wheel, the image never sees it.
RUN python -m venv /opt/build \
    && /opt/build/bin/pip install --require-hashes --no-deps --only-binary :all: \
       -r /src/requirements/build.lock
RUN python -m venv /opt/relais
ENV PATH=/opt/relais/bin:$PATH
RUN pip install --require-hashes --no-deps --only-binary :all: -r /src/requirements/production.lock

WORKDIR /src
COPY pyproject.toml README.md ./
COPY relais ./relais
COPY domain ./domain
COPY producers ./producers
COPY streams ./streams
COPY consumers ./consumers
COPY mss_bridge ./mss_bridge
COPY schemas ./schemas
COPY sandboxes ./sandboxes
COPY ops ./ops
# The project alone (--no-deps, no build isolation); `pip check` fails the build when the lock
# misses a dependency. Smoke test: the installed package finds its schemas and encodes a record.
RUN /opt/build/bin/pip wheel --no-deps --no-build-isolation --wheel-dir /tmp/dist . \
    && pip install --no-deps /tmp/dist/relais-*.whl \
    && pip check \
    && relais --help > /dev/null \
    && relais schemas check > /dev/null

# ---- runtime: the venv only, run as an unprivileged user -------------------------------------
FROM python:3.11-slim

LABEL org.opencontainers.image.title="relais" \
      org.opencontainers.image.description="Kafka event bus for French health documents (INS, DMP, MSSanté)" \
      org.opencontainers.image.licenses="Apache-2.0"

ENV PATH=/opt/relais/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    RELAIS_DATA_DIR=/var/lib/relais

RUN groupadd --system --gid 10001 relais \
    && useradd --system --uid 10001 --gid relais --home-dir /var/lib/relais \
       --no-create-home --shell /usr/sbin/nologin relais \
    && install -d -o relais -g relais -m 0750 /var/lib/relais

COPY --from=build /opt/relais /opt/relais

USER 10001:10001
WORKDIR /var/lib/relais

# Workers serve Prometheus metrics here (RELAIS_METRICS_PORT); the DMP sandbox uses 8080.
EXPOSE 9400

ENTRYPOINT ["relais"]
CMD ["--help"]
