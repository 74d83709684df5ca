# syntax=docker/dockerfile:1
# One image, three commands: jml (all-in-one and CLI), webhook, worker.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ENV CGO_ENABLED=0
RUN go build -trimpath -ldflags="-s -w" -o /out/jml ./cmd/jml \
 && go build -trimpath -ldflags="-s -w" -o /out/webhook ./cmd/webhook \
 && go build -trimpath -ldflags="-s -w" -o /out/worker ./cmd/worker

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/ /usr/local/bin/
USER nonroot:nonroot
ENTRYPOINT ["/usr/local/bin/jml"]
CMD ["help"]
