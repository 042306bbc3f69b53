/* relay.c - the physical-limit reference for e2e throughput: accepts local
 * clients on a Unix socket and copies their bytes, unparsed, to one TCP
 * reader. What polarisd does beyond this (framing, validation, stamping,
 * queues, PLP) is what the e2e/relay ratio measures.
 *
 * usage: relay UNIX_PATH TCP_PORT */
#include <ev.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static int sink = -1;
static char buf[1 << 16];

static void write_all(const char *p, size_t n)
{
    while (n > 0 && sink >= 0) {
        ssize_t w = send(sink, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            close(sink);
            sink = -1;
            return;
        }
        p += w;
        n -= (size_t)w;
    }
}

static void client_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)revents;
    ssize_t n = read(w->fd, buf, sizeof buf);
    if (n > 0) {
        write_all(buf, (size_t)n);      /* blocking sink: the reader sets the pace */
        return;
    }
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    ev_io_stop(loop, w);
    close(w->fd);
    free(w);
}

static void accept_unix_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)revents;
    int fd = accept4(w->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0)
        return;
    ev_io *c = malloc(sizeof *c);
    ev_io_init(c, client_cb, fd, EV_READ);
    ev_io_start(loop, c);
}

static void accept_tcp_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop; (void)revents;
    int fd = accept4(w->fd, NULL, NULL, SOCK_CLOEXEC);
    if (fd >= 0) {
        int one = 1;                         /* as polarisd does: no Nagle delay */
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (sink >= 0)
            close(sink);
        sink = fd;
    }
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: relay UNIX_PATH TCP_PORT\n");
        return 2;
    }
    struct sockaddr_un su = {.sun_family = AF_UNIX};
    snprintf(su.sun_path, sizeof su.sun_path, "%s", argv[1]);
    unlink(argv[1]);
    int u = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
    struct sockaddr_in si = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[2])),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int t = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    int one = 1;
    setsockopt(t, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(u, (struct sockaddr *)&su, sizeof su) < 0 || listen(u, 64) < 0 ||
        bind(t, (struct sockaddr *)&si, sizeof si) < 0 || listen(t, 4) < 0) {
        perror("relay: listen");
        return 1;
    }
    struct ev_loop *loop = ev_default_loop(0);
    ev_io au, at;
    ev_io_init(&au, accept_unix_cb, u, EV_READ);
    ev_io_init(&at, accept_tcp_cb, t, EV_READ);
    ev_io_start(loop, &au);
    ev_io_start(loop, &at);
    ev_run(loop, 0);
    return 0;
}
