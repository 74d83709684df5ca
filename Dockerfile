# syntax=docker/dockerfile:1
# One small, static, non-root image with three commands:
#   /usr/local/bin/jml      all-in-one (`jml run`), the sandbox and the operator CLI (default)
#   /usr/local/bin/webhook  the stateless receiver
#   /usr/local/bin/worker   the worker
# Build: docker build -t sentry-jml:local .   (docker compose up --build does it for you)
ARG GO_VERSION=1.26

FROM --platform=$BUILDPLATFORM golang:${GO_VERSION}-bookworm AS build
ARG TARGETOS TARGETARCH
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -ldflags="-s -w" -o /out/ ./cmd/jml ./cmd/webhook ./cmd/worker

# distroless/static: no shell, no package manager, CA certificates and tzdata only.
FROM gcr.io/distroless/static-debian12:nonroot
LABEL org.opencontainers.image.title="sentry-jml" \
      org.opencontainers.image.description="Joiner/mover/leaver automation for Sentry organizations" \
      org.opencontainers.image.source="https://github.com/sentry-jml/sentry-jml"
COPY --from=build /out/ /usr/local/bin/
# 65532 is distroless's "nonroot"; numeric so Kubernetes runAsNonRoot can verify it.
USER 65532:65532
EXPOSE 8080 8081
ENTRYPOINT ["/usr/local/bin/jml"]
CMD ["help"]
