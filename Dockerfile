# syntax=docker/dockerfile:1
# One image for the webhook (`netguard serve`) and the DNS sidecar
# (`netguard dns-proxy`): a static Go binary on distroless, non-root.
# Build: make image (docker build --build-arg VERSION=... -t IMAGE .).

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
COPY --from=build /out/netguard /netguard
USER 65532:65532
ENTRYPOINT ["/netguard"]
