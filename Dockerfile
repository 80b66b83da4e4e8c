FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin mailsensor

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/mailsensor /usr/local/bin/mailsensor
EXPOSE 8080
ENTRYPOINT []
CMD ["mailsensor", "serve"]
