# syntax=docker/dockerfile:1
# Relais worker image: one image for every stage, sink, topic tool and sandbox.
#   docker build -t relais:latest .
#   docker run --rm relais:latest --help

# ---- build: install the project and its dependencies into a venv ----------------------------
FROM python:3.11-slim AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/relais
ENV PATH=/opt/relais/bin:$PATH

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
# Smoke test: the installed package finds its schemas and encodes a record.
RUN pip install . \
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
