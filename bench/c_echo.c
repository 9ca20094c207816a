/* c_echo.c: the plain C baseline for bench/echo.sh.
 *
 * One thread, one epoll set, non-blocking sockets, edge-triggered. Each connection is
 * registered once for EPOLLIN|EPOLLOUT|EPOLLRDHUP (so, like netloop, no epoll_ctl per
 * message). On readable: read into a shared 64 KiB buffer until EAGAIN or a short read,
 * write each chunk straight back, and queue whatever the kernel did not take; the queue is
 * flushed on the next writable edge. While a connection has more than MAX_QUEUE bytes
 * queued it is not read (and is put on a "ready" list when it drains, since its edge is
 * gone). Usage: c_echo PORT   (listens on 127.0.0.1; prints "listening on tcp ADDR").
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define SCRATCH (64 * 1024)
#define MAX_QUEUE (1024 * 1024)
#define MAX_EVENTS 1024
#define LISTEN_TAG ((void *)1)

struct conn {
    int fd;
    int paused; /* reading stopped for backpressure */
    char *q;    /* unsent bytes: q[qoff..qlen) */
    size_t qlen, qoff, qcap;
};

static char scratch[SCRATCH];
static volatile sig_atomic_t stop;
static void on_term(int sig) { (void)sig; stop = 1; }

static void conn_close(struct conn *c) {
    close(c->fd); /* also removes it from the epoll set */
    free(c->q);
    free(c);
}

/* Write queued bytes; returns -1 when the connection must be closed. */
static int flush(struct conn *c) {
    while (c->qoff < c->qlen) {
        ssize_t n = write(c->fd, c->q + c->qoff, c->qlen - c->qoff);
        if (n > 0) { c->qoff += (size_t)n; continue; }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno == EAGAIN) return 0;
        return -1;
    }
    c->qoff = c->qlen = 0;
    if (c->qcap > SCRATCH) { free(c->q); c->q = NULL; c->qcap = 0; }
    return 0;
}

/* Echo data: write through when nothing is queued, queue the rest. */
static int send_data(struct conn *c, const char *p, size_t len) {
    if (c->qlen == c->qoff) {
        while (len > 0) {
            ssize_t n = write(c->fd, p, len);
            if (n > 0) { p += n; len -= (size_t)n; continue; }
            if (n < 0 && errno == EINTR) continue;
            if (n < 0 && errno == EAGAIN) break;
            return -1;
        }
        if (len == 0) return 0;
    }
    if (c->qoff > 0 && c->qoff == c->qlen) c->qoff = c->qlen = 0;
    if (c->qlen + len > c->qcap) {
        if (c->qoff > 0) { /* compact first */
            memmove(c->q, c->q + c->qoff, c->qlen - c->qoff);
            c->qlen -= c->qoff; c->qoff = 0;
        }
        size_t cap = c->qcap ? c->qcap : SCRATCH;
        while (cap < c->qlen + len) cap *= 2;
        char *q = realloc(c->q, cap);
        if (!q) return -1;
        c->q = q; c->qcap = cap;
    }
    memcpy(c->q + c->qlen, p, len);
    c->qlen += len;
    if (c->qlen - c->qoff > MAX_QUEUE) c->paused = 1;
    return 0;
}

/* Read until EAGAIN, or until a short read (the socket was drained: later bytes raise a
 * new edge), unless the peer's FIN is already in: then read on to the EOF. */
static int on_readable(struct conn *c, int to_end) {
    while (!c->paused) {
        ssize_t n = read(c->fd, scratch, SCRATCH);
        if (n > 0) {
            if (send_data(c, scratch, (size_t)n) < 0) return -1;
            if (n < SCRATCH && !to_end) return 0;
            continue;
        }
        if (n == 0) return -1; /* EOF: we have nothing left to say */
        if (errno == EINTR) continue;
        if (errno == EAGAIN) return 0;
        return -1;
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) { fprintf(stderr, "usage: %s PORT\n", argv[0]); return 2; }
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa = {0};
    sa.sa_handler = on_term; /* no SA_RESTART: epoll_wait returns EINTR */
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[1]))};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(lfd, (struct sockaddr *)&a, sizeof a) < 0 || listen(lfd, 1024) < 0) {
        perror("bind/listen");
        return 1;
    }
    socklen_t al = sizeof a;
    getsockname(lfd, (struct sockaddr *)&a, &al);
    printf("listening on tcp 127.0.0.1:%d\n", ntohs(a.sin_port));
    fflush(stdout);

    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN | EPOLLET, .data.ptr = LISTEN_TAG};
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
    static struct epoll_event events[MAX_EVENTS];
    struct conn **ready = NULL; /* resumed after backpressure: their edge is gone */
    size_t nready = 0, capready = 0;

    while (!stop) {
        int n = epoll_wait(ep, events, MAX_EVENTS, nready ? 0 : -1);
        if (n < 0) {
            if (errno == EINTR) continue;
            perror("epoll_wait");
            return 1;
        }
        for (int i = 0; i < n; i++) {
            if (events[i].data.ptr == LISTEN_TAG) {
                for (;;) {
                    int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                    if (fd < 0) {
                        if (errno == EINTR || errno == ECONNABORTED) continue;
                        break; /* EAGAIN, or EMFILE: the next edge retries */
                    }
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    struct conn *c = calloc(1, sizeof *c);
                    c->fd = fd;
                    struct epoll_event cev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
                                              .data.ptr = c};
                    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &cev) < 0) conn_close(c);
                }
                continue;
            }
            struct conn *c = events[i].data.ptr;
            uint32_t e = events[i].events;
            int bad = 0;
            if (e & (EPOLLOUT | EPOLLERR | EPOLLHUP)) {
                bad = flush(c) < 0;
                if (!bad && c->paused && c->qlen - c->qoff <= MAX_QUEUE / 4) {
                    c->paused = 0;
                    if (nready == capready) {
                        capready = capready ? capready * 2 : 64;
                        ready = realloc(ready, capready * sizeof *ready);
                    }
                    ready[nready++] = c;
                    continue; /* read it after this batch */
                }
            }
            uint32_t fin = e & (EPOLLRDHUP | EPOLLERR | EPOLLHUP);
            if (!bad && (e & EPOLLIN || fin)) bad = on_readable(c, fin != 0) < 0;
            if (bad) conn_close(c);
        }
        /* Connections whose reading resumed. (A connection closed in this batch cannot
         * be on the list: it was added in this batch only if it was not closed.) */
        size_t k = nready;
        nready = 0;
        for (size_t j = 0; j < k; j++)
            if (on_readable(ready[j], 1) < 0) conn_close(ready[j]);
    }
    return 0;
}
