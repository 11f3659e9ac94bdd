/*
 * UDP sockets for multicast DNS: a nonblocking datagram socket watched by a uv_poll_t on its loop.
 * libuv's uv_udp_t does not tell which interface a datagram came in on, nor let a send pick its
 * interface per datagram; mDNS needs both (answers carry the addresses of the interface the
 * question came from, and go out on it). So the socket is ours: recvmsg with IP_PKTINFO /
 * IPV6_PKTINFO in, sendmsg with the same control message out.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "internal.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* The largest datagram read whole; RFC 6762 §17 caps mDNS messages at 9000 bytes. Longer
 * ones are truncated by the kernel and dropped here. */
#define MC_UDP_MAX_DATAGRAM 9216
/* Datagrams read per wake-up before yielding to the rest of the loop. */
#define MC_UDP_READS_PER_WAKE 64

struct mc_udp {
    mc_loop_t *loop;
    uv_poll_t poll;
    int fd;
    int family; /* 4 or 6 */
    uint16_t port;
    bool closing;
    mc_udp_callbacks_t cb;
    uint8_t buf[MC_UDP_MAX_DATAGRAM];
};

static void fail(char *err, size_t errlen, const char *what, int code) {
    if (err && errlen) snprintf(err, errlen, "%s: %s", what, strerror(code));
}

static int set_int(int fd, int level, int name, int value) {
    return setsockopt(fd, level, name, &value, sizeof value);
}

/* Joins `group` on every interface listed; succeeds if at least one join does (an interface
 * may have gone away since it was listed). Returns 0 or an errno. */
static int join_groups(int fd, int family, const uint8_t *group, const uint32_t *ifindexes, size_t n) {
    int last = 0;
    size_t joined = 0;
    for (size_t i = 0; i < n; i++) {
        int rc;
        if (family == 4) {
            struct ip_mreqn m;
            memset(&m, 0, sizeof m);
            memcpy(&m.imr_multiaddr.s_addr, group, 4);
            m.imr_ifindex = (int)ifindexes[i];
            rc = setsockopt(fd, IPPROTO_IP, IP_ADD_MEMBERSHIP, &m, sizeof m);
        } else {
            struct ipv6_mreq m;
            memset(&m, 0, sizeof m);
            memcpy(&m.ipv6mr_multiaddr, group, 16);
            m.ipv6mr_interface = ifindexes[i];
            rc = setsockopt(fd, IPPROTO_IPV6, IPV6_ADD_MEMBERSHIP, &m, sizeof m);
        }
        if (rc == 0 || errno == EADDRINUSE) joined++;
        else last = errno;
    }
    return joined > 0 || n == 0 ? 0 : last;
}

static void to_addr(const struct sockaddr_storage *ss, mc_udp_addr_t *out) {
    memset(out, 0, sizeof *out);
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)ss;
        out->family = 4;
        memcpy(out->ip, &sin->sin_addr, 4);
        out->port = ntohs(sin->sin_port);
    } else if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)ss;
        out->family = 6;
        memcpy(out->ip, &sin6->sin6_addr, 16);
        out->port = ntohs(sin6->sin6_port);
        out->scope_id = sin6->sin6_scope_id;
    }
}

static void on_readable(uv_poll_t *p, int status, int events) {
    (void)events;
    mc_udp_t *u = p->data;
    if (status < 0) return; /* a socket error: the next datagram may still come */
    for (int i = 0; i < MC_UDP_READS_PER_WAKE && !u->closing; i++) {
        struct sockaddr_storage from;
        union {
            struct cmsghdr align;
            char bytes[CMSG_SPACE(sizeof(struct in6_pktinfo)) + CMSG_SPACE(sizeof(struct in_pktinfo))];
        } control;
        struct iovec iov = {.iov_base = u->buf, .iov_len = sizeof u->buf};
        struct msghdr msg;
        memset(&msg, 0, sizeof msg);
        msg.msg_name = &from;
        msg.msg_namelen = sizeof from;
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.bytes;
        msg.msg_controllen = sizeof control.bytes;
        ssize_t n = recvmsg(u->fd, &msg, MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EINTR) continue;
            return; /* EAGAIN: drained; anything else: try again at the next wake-up */
        }
        if (msg.msg_flags & MSG_TRUNC) continue; /* larger than any mDNS message may be */
        uint32_t ifindex = 0;
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
            if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO) {
                struct in_pktinfo info;
                memcpy(&info, CMSG_DATA(c), sizeof info);
                ifindex = (uint32_t)info.ipi_ifindex;
            } else if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_PKTINFO) {
                struct in6_pktinfo info;
                memcpy(&info, CMSG_DATA(c), sizeof info);
                ifindex = info.ipi6_ifindex;
            }
        }
        mc_udp_addr_t addr;
        to_addr(&from, &addr);
        if (addr.family == 0) continue;
        u->cb.on_datagram(u->cb.ctx, u->buf, (size_t)n, &addr, ifindex);
    }
}

mc_udp_t *mc_udp_open(mc_loop_t *loop, int family, uint16_t port, const uint8_t *group, const uint32_t *ifindexes,
                      size_t nifindexes, const mc_udp_callbacks_t *callbacks, char *err, size_t errlen) {
    if (family != 4 && family != 6) {
        fail(err, errlen, "mc_udp_open", EAFNOSUPPORT);
        return NULL;
    }
    int fd = socket(family == 4 ? AF_INET : AF_INET6, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        fail(err, errlen, "socket", errno);
        return NULL;
    }
    int rc = set_int(fd, SOL_SOCKET, SO_REUSEADDR, 1);
    if (rc == 0 && family == 4) {
        rc = set_int(fd, IPPROTO_IP, IP_PKTINFO, 1);
        if (rc == 0) rc = set_int(fd, IPPROTO_IP, IP_MULTICAST_TTL, 255);
        if (rc == 0) rc = set_int(fd, IPPROTO_IP, IP_MULTICAST_LOOP, 1);
    } else if (rc == 0) {
        rc = set_int(fd, IPPROTO_IPV6, IPV6_V6ONLY, 1);
        if (rc == 0) rc = set_int(fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, 1);
        if (rc == 0) rc = set_int(fd, IPPROTO_IPV6, IPV6_MULTICAST_HOPS, 255);
        if (rc == 0) rc = set_int(fd, IPPROTO_IPV6, IPV6_MULTICAST_LOOP, 1);
    }
    if (rc != 0) {
        fail(err, errlen, "setsockopt", errno);
        close(fd);
        return NULL;
    }
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    socklen_t sslen;
    if (family == 4) {
        struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
        sin->sin_family = AF_INET;
        sin->sin_port = htons(port);
        sin->sin_addr.s_addr = htonl(INADDR_ANY);
        sslen = sizeof *sin;
    } else {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons(port);
        sin6->sin6_addr = in6addr_any;
        sslen = sizeof *sin6;
    }
    if (bind(fd, (struct sockaddr *)&ss, sslen) != 0) {
        fail(err, errlen, "bind", errno);
        close(fd);
        return NULL;
    }
    if (group) {
        int joined = join_groups(fd, family, group, ifindexes, nifindexes);
        if (joined != 0) {
            fail(err, errlen, "joining the multicast group", joined);
            close(fd);
            return NULL;
        }
    }
    sslen = sizeof ss;
    getsockname(fd, (struct sockaddr *)&ss, &sslen);
    mc_udp_addr_t bound;
    to_addr(&ss, &bound);

    mc_udp_t *u = calloc(1, sizeof *u);
    if (!u) {
        fail(err, errlen, "mc_udp_open", ENOMEM);
        close(fd);
        return NULL;
    }
    u->loop = loop;
    u->fd = fd;
    u->family = family;
    u->port = bound.port;
    u->cb = *callbacks;
    rc = uv_poll_init_socket(&loop->uv, &u->poll, fd);
    if (rc != 0) {
        if (err && errlen) snprintf(err, errlen, "uv_poll_init_socket: %s", uv_strerror(rc));
        close(fd);
        free(u);
        return NULL;
    }
    u->poll.data = u;
    uv_poll_start(&u->poll, UV_READABLE, on_readable);
    return u;
}

uint16_t mc_udp_port(const mc_udp_t *u) { return u->port; }

int mc_udp_send(mc_udp_t *u, const uint8_t *data, size_t len, const mc_udp_addr_t *to, uint32_t ifindex) {
    if (u->closing) return -EBADF;
    if (to->family != u->family) return -EAFNOSUPPORT;
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    socklen_t sslen;
    union {
        struct cmsghdr align;
        char bytes[CMSG_SPACE(sizeof(struct in6_pktinfo))];
    } control;
    memset(&control, 0, sizeof control);
    struct iovec iov = {.iov_base = (void *)data, .iov_len = len};
    struct msghdr msg;
    memset(&msg, 0, sizeof msg);
    msg.msg_name = &ss;
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    if (ifindex != 0) {
        /* the interface of this datagram; for multicast it takes precedence over IP_MULTICAST_IF */
        msg.msg_control = control.bytes;
        struct cmsghdr *c = (struct cmsghdr *)control.bytes;
        if (u->family == 4) {
            struct in_pktinfo info;
            memset(&info, 0, sizeof info);
            info.ipi_ifindex = (int)ifindex;
            c->cmsg_level = IPPROTO_IP;
            c->cmsg_type = IP_PKTINFO;
            c->cmsg_len = CMSG_LEN(sizeof info);
            memcpy(CMSG_DATA(c), &info, sizeof info);
            msg.msg_controllen = CMSG_SPACE(sizeof info);
        } else {
            struct in6_pktinfo info;
            memset(&info, 0, sizeof info);
            info.ipi6_ifindex = ifindex;
            c->cmsg_level = IPPROTO_IPV6;
            c->cmsg_type = IPV6_PKTINFO;
            c->cmsg_len = CMSG_LEN(sizeof info);
            memcpy(CMSG_DATA(c), &info, sizeof info);
            msg.msg_controllen = CMSG_SPACE(sizeof info);
        }
    }
    if (u->family == 4) {
        struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
        sin->sin_family = AF_INET;
        sin->sin_port = htons(to->port);
        memcpy(&sin->sin_addr, to->ip, 4);
        sslen = sizeof *sin;
    } else {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons(to->port);
        memcpy(&sin6->sin6_addr, to->ip, 16);
        sin6->sin6_scope_id = to->scope_id ? to->scope_id : ifindex;
        sslen = sizeof *sin6;
    }
    msg.msg_namelen = sslen;
    for (;;) {
        ssize_t n = sendmsg(u->fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n >= 0) return 0;
        if (errno == EINTR) continue;
        return -errno; /* EAGAIN included: datagrams are best effort, the caller may log it */
    }
}

static void on_poll_closed(uv_handle_t *h) {
    mc_udp_t *u = h->data;
    close(u->fd);
    mc_udp_callbacks_t cb = u->cb;
    free(u);
    if (cb.on_closed) cb.on_closed(cb.ctx);
}

void mc_udp_close(mc_udp_t *u) {
    if (u->closing) return;
    u->closing = true;
    uv_poll_stop(&u->poll);
    uv_close((uv_handle_t *)&u->poll, on_poll_closed);
}
