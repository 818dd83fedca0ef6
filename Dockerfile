# Tandem in a container: the same build as the README's quick start, then a
# slim Debian runtime. No Docker engine runs on the development machines, so
# this file mirrors README.md step for step; keep the two in step.
#
#   docker build -t tandem .
#   docker run --network host -v "$PWD/conf:/etc/tandem" tandem
#
# The default configuration listens on loopback only: mount a configuration
# that listens on the container's addresses (and has your own passwords).

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin tandem

FROM debian:bookworm-slim
RUN useradd --system --home-dir /var/lib/tandem --create-home tandem
COPY --from=build /src/target/release/tandem /usr/local/bin/tandem
COPY conf/ /etc/tandem/
COPY sounds/ /usr/share/tandem/sounds/
USER tandem
WORKDIR /var/lib/tandem
# SIP internal (UDP/TCP 5060, TLS 5061), SIP trunks (5080), RTP media, HTTP API.
EXPOSE 5060/udp 5060/tcp 5061/tcp 5080/udp 5080/tcp 10000-20000/udp 8080/tcp
ENTRYPOINT ["tandem"]
CMD ["--config", "/etc/tandem/tandem.toml"]
