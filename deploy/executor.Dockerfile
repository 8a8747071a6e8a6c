# The sandbox: the image of the executor job. One container hosts one
# session; the executor runs the session's commands in it with bash, as the
# same unprivileged user (uid 1000), so that the files a checkpoint restores
# belong to the user who runs the next command. The executor is the
# entrypoint itself: it receives its session's cloud token in its
# environment, which an init before it would hold too, readable by the
# commands (docs/deploy.md, "The sandbox runs untrusted code").
#
#   docker build -f deploy/executor.Dockerfile -t executor .    (from the repository root)
#
# What it holds and why, and its size: docs/deploy.md, "Images". Bases are
# pinned by exact version tag, no older than the first release of their line
# with the known security fixes (deploy/dockerfile_test.go, patchedBases).

FROM golang:1.26.8 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# disable_grpc_modules (cloud.google.com/go/storage's documented opt-out):
# sandrun uses Cloud Storage's JSON API, so the storage client's gRPC
# DirectPath dependencies (xDS, about a third of the binary) stay out.
RUN CGO_ENABLED=0 GOOS=linux go build -trimpath -ldflags="-s -w" -tags disable_grpc_modules -o /out/executor ./cmd/executor

# Node's official image on Debian 12: Node.js 22 (LTS) with npm, where
# Debian's own nodejs is 18 (end of life). Its user "node" is uid 1000.
FROM node:22.23.3-bookworm-slim

# The C toolchain. build-essential (gcc, g++, make, libc headers) is about
# half of what this layer adds; build with
# --build-arg TOOLCHAIN="gcc libc6-dev make" for a C-only toolchain.
ARG TOOLCHAIN=build-essential

# Manuals, info pages and translations are a fifth of the installed size of
# the packages below and no command needs them.
RUN printf '%s\n' \
        'path-exclude=/usr/share/doc/*' \
        'path-include=/usr/share/doc/*/copyright' \
        'path-exclude=/usr/share/man/*' \
        'path-exclude=/usr/share/info/*' \
        'path-exclude=/usr/share/locale/*' \
        'path-include=/usr/share/locale/locale.alias' \
        > /etc/dpkg/dpkg.cfg.d/01-sandbox-nodoc

# What agents' commands expect to find. No init: the executor handles
# SIGTERM and reaps the orphans of background jobs itself.
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        bash \
        ca-certificates \
        coreutils \
        curl \
        git \
        jq \
        less \
        procps \
        python3 \
        python3-venv \
        unzip \
        xz-utils \
        ${TOOLCHAIN} \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/* \
    && rm -rf /opt/yarn-* /usr/local/bin/yarn /usr/local/bin/yarnpkg

# uid 1000 is named sandbox; /workspace is the session's working tree,
# saved by checkpoints.
RUN groupmod --new-name sandbox node \
    && usermod --login sandbox --home /home/sandbox --move-home node \
    && mkdir /workspace \
    && chown 1000:1000 /workspace

# No way up from uid 1000: no program in the image is setuid or setgid
# (Debian's su, passwd, mount, chsh, newgrp and the like are, and nothing
# a command runs needs them).
RUN find / -xdev -perm /6000 -type f -exec chmod a-s {} +

COPY --from=build /out/executor /usr/local/bin/executor

ENV SANDRUN_WORKSPACE=/workspace
WORKDIR /workspace
USER 1000:1000
ENTRYPOINT ["/usr/local/bin/executor"]
