# One image for the hub broker and every agency adapter (docker-compose.yml).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY protocol protocol
COPY policy policy
COPY audit audit
COPY broker broker
COPY agents agents
COPY transport transport
COPY profiles profiles
COPY sigbus sigbus
RUN pip install --no-cache-dir . && useradd --system --uid 10001 sigbus
USER sigbus
ENTRYPOINT ["sigbus", "--json-logs", "--log-level", "info"]
