# syntax=docker/dockerfile:1
# The `sluice` binary in a small runtime image.
#
#   docker build -t sluice .            (or: podman build -t sluice .)
#   docker run --rm -e LEVER_API_KEY sluice run lever --sink parquet --dest s3://bucket/lever
#
# The builder compiles the same package as CI (`-p sluice`, the workspace's Cargo.lock with
# --locked, the default features), in the release profile.

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p sluice \
 && install -D -m 0755 target/release/sluice /out/sluice

FROM debian:bookworm-slim
# CA certificates: TLS to Lever and the object stores trusts the system's roots too (extra CAs
# come from [source.network] / [sink.network] ca_cert_file).
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 sluice \
 && useradd --system --uid 10001 --gid 10001 --home-dir /home/sluice --create-home sluice \
 && install -d -o 10001 -g 10001 /data
COPY --from=build /out/sluice /usr/local/bin/sluice
USER 10001:10001
WORKDIR /home/sluice
# `sluice serve --data-dir /data`: a volume mounted here starts owned by the sluice user.
EXPOSE 7878
# `sluice run` stops at its last committed checkpoint on SIGTERM (exit 143).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/sluice"]
CMD ["--help"]
