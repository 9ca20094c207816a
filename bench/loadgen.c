/* loadgen.c: the load generator of bench/echo.sh (bench-only; one thread, epoll).
 *
 *   loadgen pingpong PORT -c CONNS -s SIZE (-t SECS [-w WARMUP] | -n TRIPS_PER_CONN) [-p PID]
 *       CONNS connections, each doing back-to-back round trips of SIZE bytes (send, wait
 *       for all SIZE bytes to come back, verify them, send the next). Every round trip is
 *       recorded in a log-bucket histogram (64 buckets per power of two, < 1.6% error).
 *       With -t the run lasts SECS after WARMUP seconds that are not counted; with -n each
 *       connection does exactly TRIPS_PER_CONN round trips (for the syscall counts).
 *   loadgen bulk PORT -m MIB [-p PID]
 *       One connection: write MIB MiB of a known pattern while reading the echo back
 *       concurrently (and verifying it); reports MB/s (10^6 bytes/s of echoed payload).
 *   loadgen idle PORT -k IDLE -c CONNS -s SIZE -t SECS [-w WARMUP] [-p SERVER_PID]
 *       Open IDLE connections from 127.0.0.2, 127.0.0.3, ... (IDLE_PER_IP each), echo
 *       one byte on each (so the server has accepted and served every one), read the
 *       server's VmRSS before and after (-p), then hold them idle while a ping-pong run
 *       with CONNS active connections goes on. Reports the idle connections the server
 *       dropped, if any.
 *
 * With -p SERVER_PID, every mode also reports the server's CPU time during the measured
 * part (summed over its threads from /proc/PID/task/x/schedstat): CPU per round trip is
 * far steadier than round trips/s on a machine whose cores other work also wants.
 *
 * Every mode prints one JSON object on stdout; problems go to stderr and into "errors"
 * (exit status 3 when errors > 0). All waits are bounded: a stalled server is reported
 * as an error, never waited on forever.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define IDLE_PER_IP 2500
#define STALL_SECS 30.0

static int port;
static long errors;
static int server_pid;     /* -p: the server, for its RSS and CPU time */
static double server_cpu;  /* server CPU seconds during the measured part of a run */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}
static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ---- histogram: values in ns; exact below 128, then 64 sub-buckets per octave ---- */
#define HB 6
#define HSUB (1 << HB)
#define HBUCKETS (2 * HSUB + 58 * HSUB)
static uint64_t hist[HBUCKETS];
static uint64_t hcount, hmax;
static double hsum;

static int hidx(uint64_t v) {
    if (v < 2 * HSUB) return (int)v;
    int m = 63 - __builtin_clzll(v); /* m >= HB + 1 */
    int shift = m - HB;
    return 2 * HSUB + (m - HB - 1) * HSUB + (int)((v >> shift) - HSUB);
}
static double hmid(int i) { /* middle of bucket i, in ns */
    if (i < 2 * HSUB) return i;
    int k = i - 2 * HSUB, m = k / HSUB + HB + 1, shift = m - HB;
    uint64_t lo = (uint64_t)(HSUB + k % HSUB) << shift;
    return (double)lo + (double)((1ull << shift) - 1) / 2.0;
}
static void hadd(uint64_t v) {
    int i = hidx(v);
    if (i >= HBUCKETS) i = HBUCKETS - 1;
    hist[i]++;
    hcount++;
    hsum += (double)v;
    if (v > hmax) hmax = v;
}
static double hpct(double p) { /* in microseconds */
    if (!hcount) return 0;
    uint64_t want = (uint64_t)ceil(p * (double)hcount), seen = 0;
    if (want < 1) want = 1;
    for (int i = 0; i < HBUCKETS; i++) {
        seen += hist[i];
        if (seen >= want) return hmid(i) / 1000.0;
    }
    return (double)hmax / 1000.0;
}

/* ---- sockets ---- */
static void nonblock(int fd) { fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK); }

/* Blocking connect from src (0: any), then non-blocking with TCP_NODELAY. */
static int dial(uint32_t src) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) { perror("socket"); return -1; }
    int one = 1;
    if (src) {
        /* Let connect() pick the port by the whole 4-tuple (not bind by address+port). */
        setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
        struct sockaddr_in s = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(src)};
        if (bind(fd, (struct sockaddr *)&s, sizeof s) < 0) { perror("bind"); close(fd); return -1; }
    }
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) { perror("connect"); close(fd); return -1; }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    nonblock(fd);
    return fd;
}

static long rss_kb(int pid) {
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    long kb = -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld", &kb) == 1) break;
    fclose(f);
    return kb;
}

/* CPU time the process has used, in seconds: the sum of its threads' schedstat run
 * times (nanoseconds, so short runs are measured as well as long ones). */
static double cpu_s(int pid) {
    if (!pid) return 0;
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/task", pid);
    DIR *d = opendir(path);
    if (!d) return 0;
    double total = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char p2[300];
        snprintf(p2, sizeof p2, "/proc/%d/task/%s/schedstat", pid, e->d_name);
        FILE *f = fopen(p2, "r");
        if (!f) continue;
        unsigned long long ns;
        if (fscanf(f, "%llu", &ns) == 1) total += (double)ns * 1e-9;
        fclose(f);
    }
    closedir(d);
    return total;
}

/* ---- ping-pong ---- */
enum { ACTIVE = 1, IDLE = 2 };
struct conn {
    int fd, kind, dead;
    uint32_t id, seq;
    size_t got;
    uint64_t sent_at;
    long trips;
};

static int ep;
static size_t size;
static char *sendbuf, *recvbuf;

static void fill(char *p, size_t n, uint32_t id, uint32_t seq) {
    for (size_t i = 0; i < n; i++) p[i] = (char)(id * 31 + seq * 7 + i);
}
static void fail(struct conn *c, const char *what) {
    if (c->dead) return;
    fprintf(stderr, "loadgen: connection %u (fd %d): %s\n", c->id, c->fd, what);
    errors++;
    c->dead = 1;
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
}
static void send_msg(struct conn *c) {
    fill(sendbuf, size, c->id, c->seq);
    size_t off = 0;
    c->sent_at = now_ns();
    c->got = 0;
    while (off < size) { /* SIZE fits the socket buffer: this only loops on EINTR */
        ssize_t n = write(c->fd, sendbuf + off, size - off);
        if (n > 0) { off += (size_t)n; continue; }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno == EAGAIN) { usleep(10); continue; }
        fail(c, strerror(errno));
        return;
    }
}

/* Run round trips on the active connections. Time mode (trips_per_conn == 0): `secs`
 * after `warmup`, then the round trips in flight are finished (not counted) so that no
 * connection is closed with unread bytes (which would reset it). Count mode: each
 * connection does `trips_per_conn`. Returns the measured duration; fills the histogram. */
static double pingpong(struct conn *cs, int nconns, double warmup, double secs, long trips_per_conn,
                       long *idle_lost) {
    struct epoll_event evs[256];
    int inflight = 0;
    for (int i = 0; i < nconns; i++) { send_msg(&cs[i]); inflight += !cs[i].dead; }
    double cpu0 = cpu_s(server_pid), cpu1 = -1;
    double t0 = now_s(), start = t0 + warmup, end = start + secs, t1 = 0;
    int measuring = warmup <= 0, draining = 0;
    double last_progress = t0;
    while (inflight > 0) {
        double t = now_s();
        if (!trips_per_conn && !draining && t >= end) { draining = 1; t1 = t; cpu1 = cpu_s(server_pid); }
        if (t - last_progress > STALL_SECS / (draining ? 6 : 1)) {
            fprintf(stderr, "loadgen: %d round trips in flight, none completed for %.0f s\n", inflight,
                    t - last_progress);
            errors++;
            break;
        }
        if (!measuring && t >= start) {
            measuring = 1;
            cpu0 = cpu_s(server_pid);
            memset(hist, 0, sizeof hist);
            hcount = hmax = 0;
            hsum = 0;
        }
        int timeout = trips_per_conn || draining ? 1000 : (int)((measuring ? end - t : start - t) * 1000) + 1;
        int n = epoll_wait(ep, evs, 256, timeout);
        if (n < 0 && errno != EINTR) { perror("epoll_wait"); errors++; break; }
        for (int i = 0; i < n; i++) {
            struct conn *c = evs[i].data.ptr;
            if (c->dead) continue;
            if (c->kind == IDLE) { /* an idle connection must stay silent */
                char b[64];
                ssize_t r = read(c->fd, b, sizeof b);
                if (r == 0 || (r < 0 && errno != EAGAIN)) { (*idle_lost)++; fail(c, "idle connection closed by server"); }
                continue;
            }
            ssize_t r = read(c->fd, recvbuf + c->got, size - c->got);
            if (r == 0) { fail(c, "EOF from server"); inflight--; continue; }
            if (r < 0) {
                if (errno == EAGAIN || errno == EINTR) continue;
                fail(c, strerror(errno)); inflight--; continue;
            }
            c->got += (size_t)r;
            if (c->got < size) continue;
            uint64_t done = now_ns();
            inflight--;
            fill(sendbuf, size, c->id, c->seq);
            if (memcmp(sendbuf, recvbuf, size) != 0) { fail(c, "echoed bytes differ"); continue; }
            last_progress = now_s();
            c->trips++;
            c->seq++;
            if (draining) continue;
            hadd(done - c->sent_at);
            if (trips_per_conn && c->trips >= trips_per_conn) continue;
            send_msg(c);
            inflight += !c->dead;
        }
    }
    if (!t1) t1 = now_s();
    if (cpu1 < 0) cpu1 = cpu_s(server_pid);
    server_cpu = cpu1 - cpu0;
    return trips_per_conn ? t1 - t0 : (t1 < end ? t1 : end) - start;
}

static void print_pp(const char *mode, int nconns, double dur) {
    printf("\"mode\":\"%s\",\"conns\":%d,\"size\":%zu,\"seconds\":%.3f,\"round_trips\":%llu,"
           "\"rps\":%.1f,\"mean_us\":%.2f,\"p50_us\":%.2f,\"p90_us\":%.2f,\"p99_us\":%.2f,"
           "\"p999_us\":%.2f,\"max_us\":%.2f,\"errors\":%ld",
           mode, nconns, size, dur, (unsigned long long)hcount, hcount / dur,
           hcount ? hsum / hcount / 1000.0 : 0, hpct(0.5), hpct(0.9), hpct(0.99), hpct(0.999),
           hmax / 1000.0, errors);
    if (server_pid)
        printf(",\"server_cpu_s\":%.4f,\"server_cpu_util\":%.3f,\"server_cpu_us_per_trip\":%.3f",
               server_cpu, server_cpu / dur, hcount ? server_cpu * 1e6 / (double)hcount : 0);
}

static struct conn *open_active(int nconns) {
    struct conn *cs = calloc((size_t)nconns, sizeof *cs);
    for (int i = 0; i < nconns; i++) {
        cs[i].id = (uint32_t)i;
        cs[i].kind = ACTIVE;
        cs[i].fd = dial(0);
        if (cs[i].fd < 0) { fprintf(stderr, "loadgen: cannot open connection %d\n", i); exit(3); }
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &cs[i]};
        epoll_ctl(ep, EPOLL_CTL_ADD, cs[i].fd, &ev);
    }
    return cs;
}

/* ---- bulk ---- */
#define PAT 1000003 /* pattern period: a prime, so chunks never line up with it */
#define CHUNK (256 * 1024)

static int bulk(double mib) {
    uint64_t total = (uint64_t)(mib * 1024 * 1024), sent = 0, recvd = 0;
    char *pat = malloc(PAT + CHUNK), *buf = malloc(CHUNK);
    for (size_t i = 0; i < PAT + CHUNK; i++) pat[i] = (char)((i % PAT) * 7 + ((i % PAT) >> 9));
    int fd = dial(0);
    if (fd < 0) return 3;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.fd = fd}, evs[4];
    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
    double cpu0 = cpu_s(server_pid);
    double t0 = now_s(), last = t0;
    int writing = 1;
    while (recvd < total) {
        int n = epoll_wait(ep, evs, 4, 1000);
        if (n < 0 && errno != EINTR) { perror("epoll_wait"); errors++; break; }
        if (now_s() - last > STALL_SECS) {
            fprintf(stderr, "loadgen: bulk stalled at %llu sent / %llu echoed bytes\n",
                    (unsigned long long)sent, (unsigned long long)recvd);
            errors++;
            break;
        }
        if (n <= 0) continue;
        uint32_t e = evs[0].events;
        if (writing && (e & EPOLLOUT)) {
            for (;;) {
                size_t want = total - sent < 65536 ? (size_t)(total - sent) : 65536;
                ssize_t w = write(fd, pat + sent % PAT, want);
                if (w > 0) { sent += (uint64_t)w; last = now_s(); if (sent == total) break; continue; }
                if (w < 0 && errno == EINTR) continue;
                if (w < 0 && errno == EAGAIN) break;
                fprintf(stderr, "loadgen: bulk write: %s\n", strerror(errno));
                errors++;
                goto out;
            }
            if (sent == total) {
                writing = 0;
                ev.events = EPOLLIN;
                epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev);
            }
        }
        if (e & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
            for (;;) {
                ssize_t r = read(fd, buf, CHUNK);
                if (r > 0) {
                    if (memcmp(buf, pat + recvd % PAT, (size_t)r) != 0) {
                        fprintf(stderr, "loadgen: bulk: echoed bytes differ near offset %llu\n",
                                (unsigned long long)recvd);
                        errors++;
                        goto out;
                    }
                    recvd += (uint64_t)r;
                    last = now_s();
                    if (r < CHUNK) break;
                    continue;
                }
                if (r < 0 && errno == EINTR) continue;
                if (r < 0 && errno == EAGAIN) break;
                fprintf(stderr, "loadgen: bulk read: %s after %llu bytes\n",
                        r == 0 ? "EOF" : strerror(errno), (unsigned long long)recvd);
                errors++;
                goto out;
            }
        }
    }
out:;
    double dur = now_s() - t0, cpu = cpu_s(server_pid) - cpu0;
    printf("{\"mode\":\"bulk\",\"bytes\":%llu,\"echoed\":%llu,\"seconds\":%.3f,\"mb_per_s\":%.1f,"
           "\"errors\":%ld",
           (unsigned long long)total, (unsigned long long)recvd, dur, recvd / dur / 1e6, errors);
    if (server_pid)
        printf(",\"server_cpu_s\":%.4f,\"server_cpu_util\":%.3f,\"server_cpu_ms_per_gb\":%.2f",
               cpu, cpu / dur, recvd ? cpu * 1e3 / ((double)recvd / 1e9) : 0);
    printf("}\n");
    close(fd);
    return errors ? 3 : 0;
}

/* ---- idle ---- */
static int idle(int nidle, int nconns, double warmup, double secs) {
    int pid = server_pid;
    struct conn *ids = calloc((size_t)nidle, sizeof *ids);
    struct epoll_event evs[256];
    long before = pid ? rss_kb(pid) : -1;
    double t0 = now_s();
    int opened = 0, echoed = 0, window = 64;
    char one = 'x';
    /* Keep at most `window` connections between connect and echo, so the server's
     * accept queue never overflows (a dropped handshake costs a 1 s SYN retransmit).
     * tokio's TcpListener::bind listens with a backlog of 128, so the window is 64. */
    while (echoed < nidle) {
        while (opened < nidle && opened - echoed < window) {
            struct conn *c = &ids[opened];
            c->id = (uint32_t)opened;
            c->kind = IDLE;
            c->fd = dial(0x7f000002u + (uint32_t)(opened / IDLE_PER_IP));
            if (c->fd < 0) {
                fprintf(stderr, "loadgen: idle connection %d failed\n", opened);
                errors++;
                goto setup_failed;
            }
            struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
            epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
            if (write(c->fd, &one, 1) != 1) { fail(c, "write"); goto setup_failed; }
            opened++;
        }
        int n = epoll_wait(ep, evs, 256, 1000);
        if (now_s() - t0 > 120) {
            fprintf(stderr, "loadgen: only %d of %d idle connections echoed after 120 s\n", echoed, nidle);
            errors++;
            goto setup_failed;
        }
        for (int i = 0; i < n; i++) {
            struct conn *c = evs[i].data.ptr;
            char b[16];
            ssize_t r = read(c->fd, b, sizeof b);
            if (r == 1 && b[0] == 'x' && !c->got) { c->got = 1; echoed++; continue; }
            if (r < 0 && errno == EAGAIN) continue;
            fail(c, r == 0 ? "idle connection: EOF during setup" : "idle connection: bad echo");
            goto setup_failed;
        }
    }
    double setup = now_s() - t0;
    usleep(300 * 1000); /* let the server finish whatever it does after the echo */
    long with_idle = pid ? rss_kb(pid) : -1;
    long lost = 0;
    struct conn *cs = open_active(nconns);
    double dur = pingpong(cs, nconns, warmup, secs, 0, &lost);
    long after = pid ? rss_kb(pid) : -1;
    printf("{");
    print_pp("idle", nconns, dur);
    printf(",\"idle\":%d,\"idle_setup_s\":%.2f,\"idle_lost\":%ld,\"rss_before_kb\":%ld,"
           "\"rss_idle_kb\":%ld,\"rss_after_kb\":%ld,\"rss_per_idle_bytes\":%.1f}\n",
           nidle, setup, lost, before, with_idle, after,
           pid ? (double)(with_idle - before) * 1024.0 / nidle : 0.0);
    return errors ? 3 : 0;
setup_failed:
    printf("{\"mode\":\"idle\",\"idle\":%d,\"opened\":%d,\"echoed\":%d,\"errors\":%ld}\n", nidle, opened,
           echoed, errors);
    return 3;
}

static void usage(void) {
    fprintf(stderr, "usage: loadgen pingpong PORT -c CONNS -s SIZE (-t SECS [-w WARMUP] | -n TRIPS) [-p PID]\n"
                    "       loadgen bulk PORT -m MIB [-p PID]\n"
                    "       loadgen idle PORT -k IDLE -c CONNS -s SIZE -t SECS [-w WARMUP] [-p PID]\n");
    exit(2);
}

int main(int argc, char **argv) {
    if (argc < 3) usage();
    const char *mode = argv[1];
    port = atoi(argv[2]);
    int nconns = 1, nidle = 0, opt;
    double secs = 0, warmup = 0.5, mib = 0;
    long trips = 0;
    size = 64;
    optind = 3;
    while ((opt = getopt(argc, argv, "c:s:t:w:n:m:k:p:")) != -1) {
        switch (opt) {
        case 'c': nconns = atoi(optarg); break;
        case 's': size = (size_t)atol(optarg); break;
        case 't': secs = atof(optarg); break;
        case 'w': warmup = atof(optarg); break;
        case 'n': trips = atol(optarg); break;
        case 'm': mib = atof(optarg); break;
        case 'k': nidle = atoi(optarg); break;
        case 'p': server_pid = atoi(optarg); break;
        default: usage();
        }
    }
    signal(SIGPIPE, SIG_IGN);
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    ep = epoll_create1(EPOLL_CLOEXEC);
    if (size < 1 || size > 65536) usage();
    sendbuf = malloc(size);
    recvbuf = malloc(size);

    if (!strcmp(mode, "bulk")) {
        if (mib <= 0) usage();
        return bulk(mib);
    }
    if (!strcmp(mode, "idle")) {
        if (nidle <= 0 || secs <= 0) usage();
        return idle(nidle, nconns, warmup, secs);
    }
    if (strcmp(mode, "pingpong") || (secs <= 0 && trips <= 0)) usage();
    long lost = 0;
    struct conn *cs = open_active(nconns);
    double dur = pingpong(cs, nconns, trips ? 0 : warmup, secs, trips, &lost);
    printf("{");
    print_pp("pingpong", nconns, dur);
    printf("}\n");
    return errors ? 3 : 0;
}
