# tierguard's container image: a static binary on distroless, as a
# non-root user.
#
# UNTESTED: no Docker engine is available where this project's tests run,
# so this file has never been built by us. It is kept to the plainest
# recipe so that it is easy to check by reading; docs/fleet.md says how it
# is meant to be used.
#
#   docker build -t tierguard .
#   docker run -p 8080:8080 -v "$PWD/tierguard.yaml:/etc/tierguard/tierguard.yaml:ro" \
#     tierguard --config /etc/tierguard/tierguard.yaml

FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# Static (no cgo), so it runs on distroless/static; the policies are
# embedded in the binary.
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/tierguard ./cmd/tierguard

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/tierguard /usr/local/bin/tierguard
# uid 65532; the image has no shell and no package manager.
USER nonroot:nonroot
# Outside the container's loopback, or nothing can reach it. Not --dev:
# dev mode refuses a non-loopback address.
ENV TIERGUARD_ADDR=0.0.0.0:8080
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/tierguard", "serve"]
