# The operator-bridge image: a static binary on an empty base, run as a
# non-root user. It holds no shell and writes nothing to its root file
# system, so it runs with readOnlyRootFilesystem. Build it with `make image`.
#
# The image listens for /healthz, /readyz and /metrics on 0.0.0.0:8090 (the
# binary's own default is loopback). Point OPERATOR_BRIDGE_NATS_URL at your
# NATS: in a Kubernetes pod an empty one is a start-up error; elsewhere the
# embedded NATS server keeps its JetStream under /tmp, which then needs to be
# writable (a tmpfs or an emptyDir).

ARG GO_VERSION=1.26.8

# Fully qualified, so podman and buildah need no short-name alias.
FROM docker.io/library/golang:${GO_VERSION} AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" \
        -o /out/operator-bridge ./cmd/operator-bridge

FROM scratch
# The system's CAs, for HTTPS operators and TLS to NATS without a CA file.
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /out/operator-bridge /operator-bridge
# A user that is not root (distroless's "nonroot"), by number: no /etc/passwd needed.
USER 65532:65532
ENV OPERATOR_BRIDGE_HTTP_ADDR=0.0.0.0:8090 \
    OPERATOR_BRIDGE_EMBEDDED_NATS_DIR=/tmp/operator-bridge/jetstream \
    OPERATOR_BRIDGE_LOG_FORMAT=json
EXPOSE 8090
ENTRYPOINT ["/operator-bridge"]
CMD ["serve"]
