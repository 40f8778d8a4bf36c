# The ringkv image: one static binary on Alpine, run as a non-root user.
#
#   docker build -t ringkv .
#   docker run --rm ringkv --help
#
# Configuration is by environment (every serve flag has one: RINGKV_ID,
# RINGKV_DATA, RINGKV_HTTP, RINGKV_RPC, RINGKV_GOSSIP, RINGKV_JOIN,
# RINGKV_ZONE, RINGKV_CERTS_DIR, RINGKV_GOSSIP_KEY_FILE, ...; see
# docs/OPERATIONS.md) or by arguments after the image name. A node listens
# on, and advertises, the addresses it is given, so give it the address
# its peers reach it by (not 0.0.0.0), and off loopback it needs
# RINGKV_CERTS_DIR and RINGKV_GOSSIP_KEY_FILE (or --insecure).
#
# deploy/check's TestDockerfile checks the build command below.

# go.mod asks for Go 1.26.8 or later; the official images set
# GOTOOLCHAIN=local, so the image's Go must be at least that.
ARG GO_VERSION=1.26
ARG ALPINE_VERSION=3.22

FROM golang:${GO_VERSION} AS build
WORKDIR /src
# Modules first, so that a source change does not download them again.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags '-s -w' -o /out/ringkv ./cmd/ringkv

# Alpine rather than distroless: the Kubernetes manifests and the compose
# file run a few lines of /bin/sh before the binary (which pod founds the
# cluster; making certificates), and the preStop hook runs sleep.
FROM alpine:${ALPINE_VERSION}
RUN addgroup -S -g 65532 ringkv \
 && adduser -S -D -H -u 65532 -G ringkv -h /var/lib/ringkv -s /sbin/nologin ringkv \
 && mkdir -p /var/lib/ringkv /certs \
 && chown ringkv:ringkv /var/lib/ringkv /certs
COPY --from=build /out/ringkv /usr/local/bin/ringkv
USER 65532:65532
ENV RINGKV_DATA=/var/lib/ringkv
VOLUME ["/var/lib/ringkv"]
# HTTP, drpc, gossip (memberlist: TCP and UDP).
EXPOSE 8081 9001 7001 7001/udp
ENTRYPOINT ["ringkv"]
CMD ["serve"]
