# Redis for compose.bot.yml on the test bed, which reaches no image hub: Debian's
# redis-server on the bed's local base, laid out as the official image is (/data, the
# redis user, redis-cli beside it). Elsewhere compose.bot.yml runs the official image.
#
#   docker build --network host -t greenlight/redis:bookworm - < testbed/redis.Dockerfile
ARG BASE_IMAGE=greenlight/base:bookworm
FROM ${BASE_IMAGE}
RUN apt-get update \
    && apt-get install -y --no-install-recommends redis-server \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /data && chown redis:redis /data
USER redis
WORKDIR /data
CMD ["redis-server"]
