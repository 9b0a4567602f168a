# Greenlight's image: `greenlight bot` by default, `greenlight worker` for the workers;
# `--target dashboard` is rq-dashboard for the compose file's `dashboard` profile.
#
#   docker build -t greenlight:latest .
#   docker build --network host --build-arg PYTHON_IMAGE=greenlight/base:bookworm \
#       --build-arg BUILD_CA_CERTS="$(cat /usr/local/share/ca-certificates/*.crt)" .   # test bed
#
# PYTHON_IMAGE is any Debian-based image with python3 >= 3.11: the official slim image
# by default; the test bed's own debootstrapped base (no image hub reachable there).
# Every stage starts from it, so the venv's interpreter is the runtime's own.
ARG PYTHON_IMAGE=python:3.12-slim

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
# The official image has venv and pip; a bare Debian python3 has neither, so there they
# come from Debian's mirror (this stage only: the runtime never has apt's lists or pip).
RUN python3 -m venv /opt/venv 2>/dev/null \
    || { apt-get update \
         && apt-get install -y --no-install-recommends python3-venv \
         && rm -rf /var/lib/apt/lists/* \
         && python3 -m venv --clear /opt/venv; }
# PEM certificates this stage's pip trusts besides its own bundle: a TLS-intercepting
# proxy's CA, where the build reaches PyPI through one. Public certificates, not secrets,
# and only here: the runtime stages never see them.
ARG BUILD_CA_CERTS=""
ENV PIP_CONFIG_FILE=/opt/pip.conf
RUN if [ -n "$BUILD_CA_CERTS" ]; then \
        bundle=$(/opt/venv/bin/python -c "import pip._vendor.certifi as c; print(c.where())") \
        && { cat "$bundle"; printf '%s\n' "$BUILD_CA_CERTS"; } > /opt/build-ca.pem \
        && printf '[global]\ncert = /opt/build-ca.pem\n' > /opt/pip.conf; \
    else : > /opt/pip.conf; fi
# Every runtime dependency is pinned with its hashes (requirements.lock, no dev tools);
# --no-deps: nothing outside the lock can come in through a dependency's metadata.
COPY requirements.lock requirements-build.lock requirements-dashboard.lock /src/
RUN /opt/venv/bin/pip install --require-hashes --no-deps -r /src/requirements.lock
RUN python3 -m venv /opt/dashboard \
    && /opt/dashboard/bin/pip install --require-hashes --no-deps -r /src/requirements-dashboard.lock \
    && /opt/dashboard/bin/pip uninstall -y pip setuptools
# Greenlight itself is built into a wheel with a pinned setuptools, in a venv of its own.
RUN python3 -m venv /opt/build \
    && /opt/build/bin/pip install --require-hashes --no-deps -r /src/requirements-build.lock
COPY pyproject.toml README.md /src/
COPY deploy /src/deploy
COPY jobs /src/jobs
COPY bot /src/bot
COPY greenlight /src/greenlight
RUN /opt/build/bin/pip wheel --no-deps --no-build-isolation --wheel-dir /wheels /src \
    && /opt/venv/bin/pip install --no-deps /wheels/greenlight-*.whl \
    && /opt/venv/bin/pip uninstall -y pip setuptools

FROM ${PYTHON_IMAGE} AS runtime
# A fixed uid, so an operator can give it the SSH key (`chown 10001 keys/deploy_ed25519`)
# or run the container as the key's owner instead (compose: GREENLIGHT_UID).
RUN groupadd --system --gid 10001 greenlight \
    && useradd --system --uid 10001 --gid 10001 --create-home --home-dir /home/greenlight \
        --shell /usr/sbin/nologin greenlight
ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
USER greenlight
WORKDIR /home/greenlight

FROM runtime AS dashboard
COPY --from=build /opt/dashboard /opt/dashboard
ENV PATH=/opt/dashboard/bin:$PATH RQ_DASHBOARD_PORT=9181
# Any answer will do (with basic auth on, / answers 401).
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 CMD ["python3", "-c", \
    "import http.client, os; c = http.client.HTTPConnection('127.0.0.1', int(os.environ['RQ_DASHBOARD_PORT']), timeout=4); c.request('GET', '/'); c.getresponse()"]
# --json: Greenlight's jobs use RQ's JSON serializer.
ENTRYPOINT ["rq-dashboard", "--json"]
CMD ["--bind", "0.0.0.0"]

FROM runtime AS greenlight
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    MPLBACKEND=Agg \
    MPLCONFIGDIR=/home/greenlight/.cache/matplotlib \
    GREENLIGHT_WORKER_NAME_FILE=/tmp/greenlight-worker.name
# matplotlib scans the fonts on its first use: done here, not on the first chart.
RUN python3 -c "import matplotlib.font_manager"
# The bot: its own GET /health; a worker: Redis answers and lists this container's
# worker as alive (`greenlight healthcheck` tells the two apart by the main process).
HEALTHCHECK --interval=30s --timeout=10s --start-period=30s --retries=3 \
    CMD ["greenlight", "healthcheck"]
ENTRYPOINT ["greenlight"]
CMD ["bot"]
