# One image for the hub broker and every agency adapter (docker-compose.yml).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY protocol protocol
COPY policy policy
COPY audit audit
COPY broker broker
COPY console console
COPY agents agents
COPY transport transport
COPY profiles profiles
COPY sigbus sigbus
# /state and /casesystem exist in the image owned by the service user, so the named
# volumes mounted there start out writable by it (Docker copies the ownership).
RUN pip install --no-cache-dir . && useradd --system --uid 10001 sigbus \
    && mkdir -p /state /casesystem && chown sigbus /state /casesystem
USER sigbus
ENTRYPOINT ["sigbus", "--json-logs", "--log-level", "info"]
