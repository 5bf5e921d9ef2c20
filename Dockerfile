# syntax=docker/dockerfile:1
# The composition worker's image: built with the Swift toolchain, run on slim Debian 12 with only
# the runtime libraries. The Swift runtime and Foundation are linked statically, so the runtime
# stage needs just the C libraries below (scripts/check_deploy.py checks that list against the binary).

ARG SWIFT_IMAGE=swift:6.3-bookworm

FROM ${SWIFT_IMAGE} AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      pkg-config libavformat-dev libavcodec-dev libavfilter-dev libswresample-dev libswscale-dev libavutil-dev \
      libsrtp2-dev libopus-dev libssl-dev libcurl4-openssl-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Dependencies first, so source edits reuse the resolved-packages layer.
COPY Package.swift ./
RUN swift package resolve
COPY Sources ./Sources
RUN swift build -c release --product shelcaster-composer --static-swift-stdlib \
 && install -D "$(swift build -c release --show-bin-path)/shelcaster-composer" /out/shelcaster-composer

FROM debian:12-slim AS runtime
# runtime-packages-begin (scripts/check_deploy.py reads this list)
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libavformat59 libavcodec59 libavfilter8 libswresample4 libswscale6 libavutil57 \
      libsrtp2-1 libopus0 libssl3 libcurl4 ca-certificates tini \
 && rm -rf /var/lib/apt/lists/*
# runtime-packages-end
RUN useradd --system --uid 10001 --home-dir /var/lib/shelcaster --create-home shelcaster
COPY --from=build /out/shelcaster-composer /usr/local/bin/shelcaster-composer
USER shelcaster
WORKDIR /var/lib/shelcaster
ENV HEALTH_PORT=8080 LOG_FORMAT=json
EXPOSE 8080
# tini reaps children and forwards SIGTERM, so ECS's stop reaches the worker's graceful shutdown.
ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/shelcaster-composer"]
CMD ["run"]
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
  CMD ["/usr/local/bin/shelcaster-composer", "healthcheck"]
