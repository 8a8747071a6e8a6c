# The reaper: a static Go binary on an empty base, run as a non-root user.
#
#   docker build -f deploy/reaper.Dockerfile -t reaper .    (from the repository root)
#
# Bases are pinned by exact version tag (see docs/deploy.md, "Images");
# scratch is no image at all.

FROM golang:1.26.8 AS build
WORKDIR /src
# Modules first, so that a source change reuses the downloaded modules.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# CGO_ENABLED=0: a static binary that needs no libc in the final image.
# disable_grpc_modules (cloud.google.com/go/storage's documented opt-out):
# sandrun uses Cloud Storage's JSON API, so the storage client's gRPC
# DirectPath dependencies (xDS, about a third of the binary) stay out.
RUN CGO_ENABLED=0 GOOS=linux go build -trimpath -ldflags="-s -w" -tags disable_grpc_modules -o /out/reaper ./cmd/reaper \
    && mkdir -p /out/tmp && chmod 1777 /out/tmp

FROM scratch
# The Google clients need CA certificates for TLS; the Go runtime wants a
# writable /tmp.
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /out/tmp /tmp
COPY --from=build /out/reaper /reaper
# 65532 is the conventional "nonroot" id of distroless images; the empty base
# has no passwd file, and none is needed.
USER 65532:65532
# Exec form: the reaper is PID 1 and gets SIGTERM itself. Cloud Run passes
# --once (terraform/run.tf): one pass per execution.
ENTRYPOINT ["/reaper"]
