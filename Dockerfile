# syntax=docker/dockerfile:1
# gmsa-webhook and kubectl-gmsa, statically linked (musl), on distroless/static: no shell, no
# package manager, user 65532 (`nonroot`). The webhook listens on 8443 (unprivileged; the
# Deployment drops every capability) and reads TLS_CRT/TLS_KEY from the mounted Secret.
#
#   docker build -t gmsa-webhook:0.1.0 .
#   docker run --rm gmsa-webhook:0.1.0 --version

FROM docker.io/library/rust:1.95-bookworm AS build
RUN rustup target add x86_64-unknown-linux-musl \
 && apt-get update \
 && apt-get install -y --no-install-recommends musl-tools \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# ring compiles C and assembly: musl-gcc does it for the musl target.
ENV CC_x86_64_unknown_linux_musl=musl-gcc
RUN cargo build --release --locked --target x86_64-unknown-linux-musl \
      -p gmsa-webhook --bin gmsa-webhook -p kubectl-gmsa --bin kubectl-gmsa \
 && mkdir /out \
 && cp target/x86_64-unknown-linux-musl/release/gmsa-webhook \
       target/x86_64-unknown-linux-musl/release/kubectl-gmsa /out/

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/gmsa-webhook /out/kubectl-gmsa /usr/local/bin/
USER 65532:65532
ENV HTTPS_PORT=8443
EXPOSE 8443
ENTRYPOINT ["/usr/local/bin/gmsa-webhook"]
