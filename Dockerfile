# syntax=docker/dockerfile:1
# phigate container image (docs/deploy.md): a static binary on distroless,
# running as a non-root user. modernc.org/sqlite is pure Go, so the build
# needs no C compiler and the binary no C library.

FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
# go.mod replaces go-smtp with the patched copy here (third_party/go-smtp/PATCHES.md).
COPY third_party ./third_party
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 GOOS=linux go build -trimpath -ldflags="-s -w" -o /out/phigate ./cmd/phigate \
 && mkdir -p /out/data

# static: no shell, no package manager, no libc; nonroot: uid/gid 65532.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/phigate /usr/local/bin/phigate
# The data folder (wrapped keys made at first start); owned by the
# non-root user so a named volume mounted here is writable.
COPY --from=build --chown=65532:65532 /out/data /var/lib/phigate
USER 65532:65532
# Unprivileged ports: portal (HTTPS), SMTP submission (STARTTLS), SMTPS.
EXPOSE 8443 2587 2465
VOLUME ["/var/lib/phigate"]
# There is no shell or curl in the image: the binary checks itself.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
  CMD ["/usr/local/bin/phigate", "healthcheck", "https://127.0.0.1:8443/healthz"]
ENTRYPOINT ["/usr/local/bin/phigate"]
CMD ["serve", "--config", "/etc/phigate/phigate.toml"]
