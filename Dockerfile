# Multi-stage build of the release binary.
#   docker build -t portcullis .
#   docker run -p 8180:8180 portcullis
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
COPY backends ./backends
COPY policies ./policies
RUN cargo build --release --locked --bin portcullis

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --home /srv/portcullis portcullis \
 && mkdir -p /srv/portcullis/var && chown portcullis /srv/portcullis/var
WORKDIR /srv/portcullis
COPY --from=build /src/target/release/portcullis /usr/local/bin/portcullis
COPY config ./config
COPY policies ./policies
USER portcullis
# cedar-agent's port; listen on all interfaces inside the container.
ENV PORTCULLIS_SERVER__LISTEN=0.0.0.0:8180
EXPOSE 8180
STOPSIGNAL SIGTERM
ENTRYPOINT ["portcullis"]
CMD ["serve"]
