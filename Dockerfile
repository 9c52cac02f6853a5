# natscope in a container: the Debian package built from this tree
# (make package, the one CI installs and purges), on Debian 12 slim.
#
#   docker build -t natscope .
#   docker run -d --name natscope --network host \
#     --cap-drop ALL --cap-add NET_ADMIN --read-only \
#     -v natscope:/var/lib/natscope natscope
#
# --network host: natscope must see the host's conntrack table (it is per
# network namespace).  NET_ADMIN is the only capability it needs (the
# conntrack netlink socket and its dumps).  The process starts as root
# inside the container because a capability granted to a non-root user
# through the file would not survive no_new_privs, which Kubernetes sets
# with allowPrivilegeEscalation: false; it holds nothing but NET_ADMIN.
# The Kubernetes DaemonSet is in deploy/kubernetes/.

FROM debian:12-slim AS build
WORKDIR /src
COPY . .
RUN apt-get update \
 && tools/deps.sh build \
 && make package

FROM debian:12-slim
COPY --from=build /src/build-pkg/natscope_*.deb /tmp/
RUN apt-get update \
 && apt-get install -y --no-install-recommends /tmp/natscope_*.deb \
 && rm -rf /var/lib/apt/lists/* /tmp/natscope_*.deb \
 && mkdir -p /var/lib/natscope
VOLUME /var/lib/natscope
EXPOSE 9628
HEALTHCHECK --interval=30s --timeout=5s --start-period=5m \
  CMD ["/usr/sbin/natscope", "health"]
ENTRYPOINT ["/usr/sbin/natscope"]
CMD ["run", "--db", "/var/lib/natscope/natscope.db", "--listen", "127.0.0.1:9628"]
