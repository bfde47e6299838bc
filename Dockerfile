# syntax=docker/dockerfile:1
#
# x0t in a container: one static binary (CGO_ENABLED=0: the SQLite driver is
# pure Go) on a distroless base with no shell and no package manager.
#
#   docker build -t x0t .                   the control plane (default target)
#   docker build --target node -t x0t-node .  the node agent
#
# Control plane, as the unprivileged user nonroot (65532), state in a volume:
#   docker run -d -p 8443:8443 -p 9090:9090 -v x0t-control:/var/lib/x0t-control x0t
#
# Node: creating and configuring a TUN device takes CAP_NET_ADMIN and the
# device /dev/net/tun. Docker gives capabilities to a non-root user only through
# file capabilities, which a distroless image cannot set at build time, so the
# node image runs as root inside the container with NET_ADMIN as its only added
# capability (every other capability of Docker's default set can be dropped):
#   docker run -d --cap-drop ALL --cap-add NET_ADMIN --device /dev/net/tun \
#     --network host -v x0t-node:/var/lib/x0t \
#     -e X0T_CONTROL=https://control.example.net:8443 -e X0T_TOKEN=x0t_join_... x0t-node
# (--network host puts the tunnel in the host's network; without it the mesh is
# reachable from that container's network namespace only.) A node that needs no
# kernel TUN (a relay) runs unprivileged with "node up --netstack".

ARG GO_VERSION=1.26

FROM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
# Modules first: a source change does not download them again.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 GOOS=linux go build -trimpath -ldflags="-s -w" -o /out/x0t ./cmd/x0t \
	&& mkdir -p /out/data /out/state

# The node agent: root in the container, see above.
FROM gcr.io/distroless/static-debian12 AS node
COPY --from=build /out/x0t /usr/local/bin/x0t
COPY --from=build /out/state /var/lib/x0t
VOLUME /var/lib/x0t
EXPOSE 4242/udp
ENTRYPOINT ["/usr/local/bin/x0t"]
CMD ["node", "up", "--state", "/var/lib/x0t", "--tun", "x0t0", "--listen", "0.0.0.0:4242"]

# The control plane (the default target): non-root, no capabilities needed.
FROM gcr.io/distroless/static-debian12:nonroot AS control
COPY --from=build /out/x0t /usr/local/bin/x0t
# The volume's mount point belongs to nonroot, so a fresh volume is writable.
COPY --from=build --chown=65532:65532 /out/data /var/lib/x0t-control
USER 65532:65532
VOLUME /var/lib/x0t-control
EXPOSE 8443/tcp 9090/tcp
ENTRYPOINT ["/usr/local/bin/x0t"]
CMD ["control", "serve", "--data", "/var/lib/x0t-control", "--listen", ":8443", "--metrics-listen", ":9090"]
