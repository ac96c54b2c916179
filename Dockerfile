# rekap's service image for docker-compose.yml: one image, the role is the command
# (rekap worker | ingest | exporter | simulate ...).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
# .dockerignore keeps the venv, runtime data and tests out of the context.
COPY . .
RUN pip install . \
    && useradd --system --create-home --uid 10001 rekap \
    && mkdir -p /var/lib/rekap \
    && chown rekap /var/lib/rekap

# Runtime dir in a volume owned by the service user; listen on all interfaces
# inside the container so Prometheus and the other services can reach it.
ENV REKAP_RUNTIME_DIR=/var/lib/rekap \
    REKAP_HOST=0.0.0.0
USER rekap
WORKDIR /var/lib/rekap
VOLUME ["/var/lib/rekap"]
EXPOSE 16066 16067 16068

ENTRYPOINT ["rekap"]
CMD ["--help"]
