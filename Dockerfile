# syntax=docker/dockerfile:1
# gmsa-webhook and kubectl-gmsa on distroless/cc (glibc, no shell, no package manager, user
# 65532 `nonroot`). The binaries are the same release build the tests and benchmarks run:
# `cargo build --release` on Debian bookworm, linked against bookworm's glibc, which is what
# distroless/cc-debian12 carries (a test runs that build in a root holding only the image's
# libraries: crates/gmsa-webhook/tests/empty_env.rs). The webhook listens on 8443
# (unprivileged; the Deployment drops every capability) and reads TLS_CRT/TLS_KEY from the
# mounted Secret.
#
#   docker build -t gmsa-webhook:0.1.0 .
#   docker run --rm gmsa-webhook:0.1.0 --version

FROM docker.io/library/rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked \
      -p gmsa-webhook --bin gmsa-webhook -p kubectl-gmsa --bin kubectl-gmsa \
 && mkdir /out \
 && cp target/release/gmsa-webhook target/release/kubectl-gmsa /out/

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/gmsa-webhook /out/kubectl-gmsa /usr/local/bin/
USER 65532:65532
ENV HTTPS_PORT=8443
EXPOSE 8443 8081
ENTRYPOINT ["/usr/local/bin/gmsa-webhook"]
