# The berth container image: `berth serve` on 0.0.0.0:5000, data in the volume /data, run as a
# non-root user. Build it where images can be pulled:
#
#   docker build -t berth .
#   docker run -d -p 127.0.0.1:5000:5000 -e BERTH_AUTH=none -v berth-data:/data berth
#
# On 0.0.0.0, berth refuses to start without BERTH_AUTH: a policy file (mount it, e.g.
# `-v ./berth-auth.toml:/etc/berth/auth.toml:ro -e BERTH_AUTH=/etc/berth/auth.toml`) or `none`.
# (`docker buildx build --platform linux/arm64 -t …` for AWS Graviton and Fargate arm64.) Every
# setting is a BERTH_* variable (README "Configuration"): `-e BERTH_STORAGE=s3 -e …`.
# scripts/image builds the same runtime stage FROM scratch around a binary already built, for
# machines that cannot pull images (it reads the stage below from this file).

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p berth-server && mkdir /data

FROM gcr.io/distroless/cc-debian12:nonroot AS runtime
COPY --from=build /src/target/release/berth /usr/local/bin/berth
COPY --from=build --chown=65532:65532 /data /data
ENV BERTH_LISTEN=0.0.0.0:5000 BERTH_ROOT=/data
USER 65532:65532
EXPOSE 5000
VOLUME /data
HEALTHCHECK --interval=10s --timeout=5s --start-period=5s --retries=3 CMD ["/usr/local/bin/berth", "health"]
ENTRYPOINT ["/usr/local/bin/berth", "serve"]
