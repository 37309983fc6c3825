# syntax=docker/dockerfile:1
# One image for the webhook (`netguard serve`) and the DNS sidecar
# (`netguard dns-proxy`): a static Go binary on distroless, non-root.
# Build: make docker-image (docker build --build-arg VERSION=... -t IMAGE .).
# Without an engine, make image builds the same image (hack/image).

ARG GO_VERSION=1.26

FROM --platform=$BUILDPLATFORM golang:${GO_VERSION} AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG TARGETOS TARGETARCH
ARG VERSION=devel
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath \
      -ldflags "-s -w -X github.com/netguard-io/netguard/internal/version.Version=${VERSION}" \
      -o /out/netguard ./cmd/netguard

# static: no libc, no shell; nonroot: UID/GID 65532, which the chart and the
# injected sidecar run as.
FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=devel
LABEL org.opencontainers.image.title="netguard" \
      org.opencontainers.image.description="Kubernetes admission webhook that removes outages caused by cluster networking defaults" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.source="https://github.com/netguard-io/netguard" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /out/netguard /netguard
USER 65532:65532
ENTRYPOINT ["/netguard"]
