# The balsam_mq image: the `balsam-mq` command, running the HTTP gateway by default.
#
#   docker build -t balsam-mq .
#   docker run --rm -p 127.0.0.1:8000:8000 \
#     -e BALSAM_MONGODB_URL=... -e BALSAM_AMQP_URL=... balsam-mq
#   docker run --rm -e ... balsam-mq site agent /site      # any other balsam-mq command
#
# compose.yaml runs it as the gateway and as a site agent. The HEALTHCHECK below probes the
# gateway on http://127.0.0.1:8000/healthz: a container running another command, another
# port or the gateway's own TLS (--ssl-certfile) sets its own (compose.yaml does).
FROM python:3.11.14-slim-trixie

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Every dependency installs from a wheel (mpi4py's wheels load an MPI library only where a
# launcher runs jobs under MPI, never in the gateway or the site agent): no compiler here.
WORKDIR /src
COPY pyproject.toml README.md ./
COPY balsam_mq ./balsam_mq
RUN pip install --no-cache-dir . && rm -rf /src

# A fixed uid, so that a bind-mounted site directory can be given to it (chown 1000).
# /site belongs to it: a named volume mounted there starts out writable by it.
RUN groupadd --gid 1000 balsam \
    && useradd --uid 1000 --gid balsam --create-home --shell /usr/sbin/nologin balsam \
    && mkdir /site \
    && chown balsam:balsam /site
USER 1000:1000
WORKDIR /home/balsam

EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]

ENTRYPOINT ["balsam-mq"]
CMD ["gateway", "--host", "0.0.0.0", "--port", "8000"]
